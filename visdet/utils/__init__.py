"""Helpers every visdet package uses: did-you-mean, quiet imports, signatures, tables."""
