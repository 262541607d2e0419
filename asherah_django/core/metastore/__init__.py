"""Metastores: where envelope key records are kept."""
