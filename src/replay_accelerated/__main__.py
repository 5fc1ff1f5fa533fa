"""`python -m replay_accelerated [mode] [overrides...]`: the same command as `replay-accelerated`."""

from replay_accelerated.cli import main

main()
