"""Continual transformer core: regular window forward and exact per-token steps."""

from coaudio.continual.encoder import ContinualEncoder, EncoderConfig
from coaudio.continual.layer import EncoderLayer, LayerConfig
from coaudio.continual.positional import PositionalEncoding
from coaudio.continual.state import (
    EncoderState,
    RetroactiveState,
    SingleOutputState,
    stack_states,
    unstack_states,
)

__all__ = [
    "ContinualEncoder",
    "EncoderConfig",
    "EncoderLayer",
    "EncoderState",
    "LayerConfig",
    "PositionalEncoding",
    "RetroactiveState",
    "SingleOutputState",
    "stack_states",
    "unstack_states",
]
