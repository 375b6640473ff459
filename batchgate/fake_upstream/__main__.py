"""``python -m batchgate.fake_upstream``: the same command as ``batchgate fake-upstream``."""

from batchgate.fake_upstream.cli import fake_upstream_command

if __name__ == "__main__":
    fake_upstream_command(prog_name="python -m batchgate.fake_upstream")
