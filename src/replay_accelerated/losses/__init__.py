"""Training losses; each takes (hidden at target positions, targets, item head)."""

from replay_accelerated.losses.cross_entropy import CrossEntropyLoss, build_loss

__all__ = ["CrossEntropyLoss", "build_loss"]
