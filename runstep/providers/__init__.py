"""Chat models behind a small interface: any OpenAI-compatible endpoint, or the local stand-in."""
