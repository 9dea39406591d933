# The fixture scripts here import TensorFlow or Paddle and write files: run them by hand, never collect them.
collect_ignore_glob = ["*.py"]
