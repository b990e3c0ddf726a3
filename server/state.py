"""AppState: what every route needs, set up by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from engine import Engine
from engine.activation import Activation, default_activation
from server.config import ServerConfig
from server.metrics import ServerMetrics


@dataclass
class AppState:
    engine: Engine
    config: ServerConfig
    names: tuple[str, ...]
    created: int
    metrics: ServerMetrics

    @property
    def default_activation(self) -> Activation:
        info = self.engine.info
        return default_activation(info.problem_type, info.num_labels)


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.classifyd
    return state
