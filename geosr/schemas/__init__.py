"""Offline copies of the JSON schemas geosr validates its STAC Items against."""
