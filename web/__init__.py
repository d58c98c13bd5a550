"""The mmsearch web page (Gradio)."""
