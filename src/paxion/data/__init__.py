"""Everything between a video file and a batch. Never imports the model side."""
