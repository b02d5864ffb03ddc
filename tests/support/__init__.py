"""Helpers the tests share (no tests here): settings, sample issues and lists, golden output."""
