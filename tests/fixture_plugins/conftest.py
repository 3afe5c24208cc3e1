# The fixture distributions are installed and tested by tests/test_plugins.py;
# their own tests need them installed, so the core suite does not collect them.
collect_ignore_glob = ["*"]
