"""Renderers: turn an anatomy into a terminal table, Markdown, JSON or HTML, last of all."""
