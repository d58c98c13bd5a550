"""From files to stored records: scanning folders, decoding, the index pipeline, reindexing and its
hand-over to a serving process."""
