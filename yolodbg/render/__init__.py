"""Renderers: console tables (rich), JSON documents, overlays."""
