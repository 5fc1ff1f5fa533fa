"""Accelerated building blocks: SwitchBack int8 item head (`acceleration.switchback`)."""
