"""Reusable neural building blocks (no registration: patchers and fusers register themselves)."""
