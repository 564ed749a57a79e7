"""Placetel telephony source for callgate: Notify API in, Web API v2 out."""
