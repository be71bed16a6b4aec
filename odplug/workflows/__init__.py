"""What the commands do, as library functions: evaluate a run, export and verify it, and the
whole pipeline. The command line (`odplug.cli`) only parses arguments and shows results."""
