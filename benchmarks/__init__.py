"""Benchmarks of suno_mp4: figures beside baselines measured in the same run."""
