"""Video: YUV sequences, real encoders through FFmpeg, and quality metrics."""
