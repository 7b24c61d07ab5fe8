"""The HTTP edge: parse, validate, call one domain function, shape the answer."""
