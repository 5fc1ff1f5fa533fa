"""Benchmarks that compare our models with reference implementations on identical data."""
