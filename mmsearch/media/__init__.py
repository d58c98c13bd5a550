"""Reading media: images (the only Pillow entry), captions, thumbnails and text in photos (OCR engines)."""
