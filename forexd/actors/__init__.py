"""Actors: async shells around pure per-symbol cores."""
