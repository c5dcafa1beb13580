"""Thin click commands: parse, call one library function, print a summary."""
