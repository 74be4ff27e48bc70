"""Frontier growth: a digit-level model labels generated problems one level past what it masters.

Pure parts (families, filters, curriculum, statistics) import nothing heavy; ``engine`` holds the torch side.
"""
