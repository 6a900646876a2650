"""Datasets: readers and splits."""
