"""Streamlit helpers shared by the pages (the backend package ``landscape`` stays UI-free)."""
