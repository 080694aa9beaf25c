"""Which providers to try for a request, in which order: the router's strategies."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bus import Message

from ..messages import Attempt, GenerateRequest, RequestCompleted, Strategy
from ..providers import FEATURES, TRANSLATED, Catalog, UnknownModel, vendor_of
from ..runtime.config import RouterConfig
from ._breaker_state import BreakerView
from ._load import DeploymentLoad

__all__ = [
    "Candidate",
    "HealthSource",
    "LatencyView",
    "Planner",
    "Unsupported",
    "WrongKind",
    "fallback_chains",
]


class HealthSource(Protocol):
    """What the health prober found: whether a provider is down, its probe latency."""

    def is_down(self, provider: str) -> bool: ...

    def probe_latency(self, provider: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: str
    model: str
    step: int = 0  # 0: the model asked for; 1, 2, ...: its fallback chain's models


class LatencyView:
    """Recent latency per provider and model (an exponentially weighted mean), and for
    streams the time to first token, learned from every ``request.completed`` event of
    every process; and when each was last seen (a candidate not seen lately is explored)."""

    def __init__(self, weight: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self._weight = weight
        self._clock = clock
        self._mean: dict[tuple[str, str], float] = {}
        self._spread: dict[tuple[str, str], float] = {}  # exponentially weighted variance
        self._first: dict[tuple[str, str], float] = {}
        self._first_spread: dict[tuple[str, str], float] = {}
        self._seen: dict[tuple[str, str], float] = {}

    def on_event(self, message: Message) -> None:
        if isinstance(message, RequestCompleted):
            for attempt in message.attempts:
                if attempt.outcome == "ok":
                    self.observe(attempt.provider, attempt.model, attempt.latency_ms,
                                 attempt.first_token_ms)  # fmt: skip

    def observe(
        self, provider: str, model: str, latency_ms: float, first_token_ms: float | None = None
    ) -> None:
        key = (provider, model)
        self._move(self._mean, self._spread, key, latency_ms)
        if first_token_ms is not None:
            self._move(self._first, self._first_spread, key, first_token_ms)
        self._seen[key] = self._clock()

    def _move(
        self,
        means: dict[tuple[str, str], float],
        spreads: dict[tuple[str, str], float],
        key: tuple[str, str],
        value: float,
    ) -> None:
        """The exponentially weighted mean and variance, moved by one observation."""
        known = means.get(key)
        if known is None:
            means[key] = value
            return
        gap = value - known
        spreads[key] = (1 - self._weight) * (spreads.get(key, 0.0) + self._weight * gap * gap)
        means[key] = known + self._weight * gap

    def latency(self, provider: str, model: str, stream: bool = False) -> float | None:
        """The mean latency (a stream's: until its first token, when known)."""
        key = (provider, model)
        if stream and key in self._first:
            return self._first[key]
        return self._mean.get(key)

    def p95(self, provider: str, model: str, stream: bool = False) -> float | None:
        """About the 95th percentile of recent latencies (a stream's: of its first
        token), the mean plus 1.645 of their exponentially weighted standard deviation;
        None before any answer."""
        key = (provider, model)
        means, spreads = (self._first, self._first_spread) if stream else (
            self._mean, self._spread)  # fmt: skip
        mean = means.get(key)
        if mean is None:
            return None
        return mean + 1.645 * math.sqrt(spreads.get(key, 0.0))

    def stale(self, provider: str, model: str, after_s: float) -> bool:
        """No answer seen from it for ``after_s`` seconds (or ever)."""
        seen = self._seen.get((provider, model))
        return seen is None or self._clock() - seen > after_s


_NOT_CARRIED = "its adapter does not carry it"
_LACKS = "the model lacks it"


class Planner:
    """Expands a request's model into ordered candidates across enabled providers.

    ``serves(provider, model)`` says whether an enabled provider can serve a model
    (Azure only through a deployment). Candidates whose breaker refuses calls, or
    whose provider the health prober found down, are left out and reported as skipped
    attempts; when every usable candidate is down, they are tried all the same.
    """

    def __init__(
        self,
        catalog: Catalog,
        default_models: dict[str, str],
        serves: Callable[[str, str], bool],
        config: RouterConfig,
        latency: LatencyView,
        breakers: BreakerView,
        health: HealthSource | None = None,
        deployments: Callable[[str], list[str]] | None = None,
        load: DeploymentLoad | None = None,
    ) -> None:
        self.catalog = catalog
        self.default_models = default_models  # enabled providers only
        self._serves = serves
        self.config = config
        self.latency = latency
        self.breakers = breakers
        self.health = health
        self._turn = itertools.count()
        self.chains = fallback_chains(catalog, config)
        self.load = load  # with router.balance least_busy or headroom
        # The enabled deployments of a provider (or of a provider:account pin).
        self.deployments = deployments or (lambda p: [p] if p in default_models else [])

    def plan(
        self, request: GenerateRequest, prompt_tokens: int | None = None
    ) -> tuple[list[Candidate], list[Attempt]]:
        """Candidates to try, in order, and the ones skipped (with why); ``prompt_tokens``
        is the prompt's estimate when the caller has it already."""
        pairs = self._asked(request)
        groups = [pairs, *self._chain(request, pairs)]
        candidates = [
            Candidate(d, m, step)
            for step, group in enumerate(groups)
            for p, m in group
            # A model's provider: each of its deployments (the defaults are deployments).
            for d in (self.deployments(p) if request.model else [p])
            if self._serves(d, m)
        ]
        if not any(c.step == 0 for c in candidates):
            # No enabled provider serves the model asked for: its chain is for failures,
            # not a stand-in for a model this deployment does not offer.
            candidates = []
        lacking: list[Attempt] = []
        needed = request.features()
        if needed and candidates:
            # The model asked for must take what the request uses (a 400 naming it if
            # not: a chain is for failures, not for parameters); its fallbacks that do
            # not are left out.
            first = candidates[0].step
            able, lacking = self._able([c for c in candidates if c.step == first], needed)
            rest, left_out = self._able(
                [c for c in candidates if c.step != first], needed, strict=False
            )
            candidates, lacking = able + rest, lacking + left_out
        strategy: Strategy = request.strategy or self.config.strategy
        ordered: list[Candidate] = []
        skipped: list[Attempt] = []
        for step in sorted({c.step for c in candidates}):  # each model's own, in chain order
            some, left_out = self._order(
                strategy, [c for c in candidates if c.step == step], request, prompt_tokens
            )
            ordered += self._balanced(some)
            skipped += left_out
        candidates = ordered
        skipped = lacking + skipped
        usable: list[Candidate] = []
        down: list[Candidate] = []
        for candidate in candidates:
            state = self.breakers.get(candidate.provider)
            if self.breakers.refuses(candidate.provider):
                outcome = "key_invalid" if state.key_invalid else "breaker_open"
                wait = None
                if state.open_until_ms and not (state.key_invalid or state.forced):
                    wait = max(0.0, (state.open_until_ms - self.breakers.now_ms()) / 1000)
                skipped.append(
                    Attempt(
                        provider=candidate.provider,
                        model=candidate.model,
                        outcome=outcome,
                        message=state.reason,
                        retry_after=wait,
                    )
                )
            elif self.health is not None and self.health.is_down(candidate.provider):
                down.append(candidate)
            else:
                usable.append(candidate)
        if not usable:  # the prober may be wrong: a last resort rather than no answer
            return down, skipped
        if self.load is not None and self.config.balance != "strategy":
            self.load.sent(usable[0].provider)  # most likely where it goes
        skipped += [Attempt(provider=c.provider, model=c.model, outcome="provider_down",
                            message="the health prober found it down") for c in down]  # fmt: skip
        return usable, skipped

    def _asked(self, request: GenerateRequest) -> list[tuple[str, str]]:
        """``(provider, model)`` of what the request names; ``UnknownModel`` for a name
        or deployment that is none, ``WrongKind`` for a model of the other kind."""
        if request.model:
            pairs = self.catalog.resolve(request.model)
            pinned = request.model.partition("/")[0]
            if ":" in pinned and not self.deployments(pinned):  # no such deployment
                raise UnknownModel(request.model)
        elif request.embed:
            raise WrongKind("model: name the embedding model (text-embedding-3-small, ...)")
        else:
            pairs = list(self.default_models.items())
        embedding = self.catalog.embedding_models
        if request.embed:
            pairs = [(p, m) for p, m in pairs if m in embedding]
            if not pairs:
                raise WrongKind(f"model: {request.model!r} is not an embedding model")
        elif embedding and any(m in embedding for _p, m in pairs):
            raise WrongKind(f"model: {request.model!r} is an embedding model: it answers "
                            "/v1/embeddings, not a conversation")  # fmt: skip
        return pairs

    def _chain(
        self, request: GenerateRequest, pairs: list[tuple[str, str]]
    ) -> list[list[tuple[str, str]]]:
        """The fallback models' candidates, one group each in chain order: the request's
        own ``fallbacks``, else the configured chain of the model it names. None for a
        ``provider/model`` (it never crosses), a tier (it is a chain itself), no model,
        or ``fallbacks: false``."""
        name = request.model
        own = request.fallbacks
        if own and (not name or "/" in name or name in self.catalog.tiers or request.embed):
            raise WrongKind("fallbacks: only a model (an id or an alias) has a fallback chain; "
                            "not a tier, a provider/model pin, no model, nor an embedding "
                            "model (another's vectors are not comparable)")  # fmt: skip
        if not name or "/" in name or name in self.catalog.tiers or own is False:
            return []
        if request.embed and not own:
            return []  # an embedding model's vectors are its own: no default chain
        if isinstance(request.fallbacks, list):
            chain = request.fallbacks
        else:
            chain = self.chains.get(self.catalog.canonical(name) or name, [])
        seen = set(pairs)
        groups: list[list[tuple[str, str]]] = []
        for entry in chain:
            try:
                found = self.catalog.resolve(entry)
            except UnknownModel as exc:  # only a request's own list can get here
                raise WrongKind(f"fallbacks: {exc}") from None
            if request.embed:
                found = [(p, m) for p, m in found if m in self.catalog.embedding_models]
            else:
                found = [(p, m) for p, m in found if m not in self.catalog.embedding_models]
            group = [pair for pair in found if pair not in seen]
            seen.update(group)
            if group:
                groups.append(group)
        return groups

    def _able(
        self, candidates: list[Candidate], needed: set[str], *, strict: bool = True
    ) -> tuple[list[Candidate], list[Attempt]]:
        """The candidates that take every feature the request uses, and the others as
        skipped attempts; ``Unsupported`` when none does (and ``strict``)."""
        able: list[Candidate] = []
        lacking: list[Attempt] = []
        common: set[str] | None = None  # what every candidate lacks
        for candidate in candidates:
            model_has = self.catalog.features(candidate.model)
            carried = TRANSLATED.get(vendor_of(candidate.provider), frozenset())
            missing = needed - (model_has & carried)
            if not missing:
                able.append(candidate)
                continue
            common = missing if common is None else common & missing
            why = [f"{name} ({_NOT_CARRIED if name in model_has else _LACKS})"
                   for name in sorted(missing)]  # fmt: skip
            lacking.append(Attempt(provider=candidate.provider, model=candidate.model,
                                   outcome="unsupported",
                                   message="does not take " + ", ".join(why)))  # fmt: skip
        if not able and strict:
            feature = min(common or needed)
            raise Unsupported(FEATURES[feature], feature, lacking)
        return able, lacking

    def _order(
        self,
        strategy: Strategy,
        candidates: list[Candidate],
        request: GenerateRequest,
        prompt_tokens: int | None,
    ) -> tuple[list[Candidate], list[Attempt]]:
        if strategy == "cost":
            if prompt_tokens is None:
                prompt_tokens = request.prompt_estimate()
            return self._by_cost(candidates, request, prompt_tokens)
        if strategy == "performance":
            return self._explored(self._by_latency(candidates, request.stream)), []
        if strategy == "round_robin" and candidates:
            turn = next(self._turn) % len(candidates)
            return candidates[turn:] + candidates[:turn], []
        if strategy == "weighted":
            weights = self.config.weights

            def key(candidate: Candidate) -> float:
                provider = candidate.provider  # a deployment's own weight, else its vendor's
                weight = weights.get(provider, weights.get(vendor_of(provider), 1.0))
                return random.random() ** (1 / weight) if weight > 0 else -1.0

            return sorted(candidates, key=key, reverse=True), []
        return candidates, []

    def _balanced(self, ranked: list[Candidate]) -> list[Candidate]:
        """Each model's deployments reordered among themselves by load
        (``router.balance``), in the places the strategy gave that model."""
        load, balance = self.load, self.config.balance
        if load is None or balance == "strategy" or len(ranked) < 2:
            return ranked
        if balance == "least_busy":

            def key(c: Candidate) -> float:
                return load.busy(c.provider)
        else:

            def key(c: Candidate) -> float:
                return -load.headroom(c.provider)

        out = list(ranked)
        for model in {c.model for c in ranked}:
            places = [i for i, c in enumerate(ranked) if c.model == model]
            if len(places) > 1:
                for place, candidate in zip(places, sorted((ranked[i] for i in places), key=key),
                                            strict=True):  # fmt: skip
                    out[place] = candidate
        return out

    def _by_latency(self, candidates: list[Candidate], stream: bool) -> list[Candidate]:
        """Fastest first (a stream: by time to first token). With no traffic yet, the
        probes' latency ranks them (unprobed last); a candidate not tried counts as fast
        as the fastest known."""
        known = [self.latency.latency(c.provider, c.model, stream) for c in candidates]
        if self.health is not None and all(k is None for k in known):
            probed = [self.health.probe_latency(c.provider) for c in candidates]
            slowest = float("inf")
            order = sorted(zip(candidates, probed, strict=True),
                           key=lambda cp: slowest if cp[1] is None else cp[1])  # fmt: skip
            return [c for c, _p in order]
        floor = min((k for k in known if k is not None), default=0.0)
        ranked = sorted(
            zip(candidates, known, strict=True), key=lambda ck: floor if ck[1] is None else ck[1]
        )
        return [c for c, _k in ranked]

    def _explored(self, ranked: list[Candidate]) -> list[Candidate]:
        """A share of requests (``router.explore_share``) go first to a candidate with
        no answer seen lately (``router.explore_after_s``): a provider that became
        faster, or was never tried, is found."""
        share = self.config.explore_share
        if share <= 0 or len(ranked) < 2 or random.random() >= share:
            return ranked
        after = self.config.explore_after_s
        unseen = [c for c in ranked[1:] if self.latency.stale(c.provider, c.model, after)]
        if not unseen:
            return ranked
        chosen = random.choice(unseen)
        return [chosen, *(c for c in ranked if c != chosen)]

    def _by_cost(
        self, candidates: list[Candidate], request: GenerateRequest, prompt: int
    ) -> tuple[list[Candidate], list[Attempt]]:
        output = 0 if request.embed else request.max_tokens or self.config.expected_output_tokens
        # An embedding model's window bounds each input alone; a conversation's, all of it.
        fit = max(request.input_estimates()) if request.embed else prompt
        fitting: list[tuple[float, Candidate]] = []
        skipped = []
        for candidate in candidates:
            try:
                info = self.catalog.get(candidate.model)
            except UnknownModel:
                fitting.append((float("inf"), candidate))
                continue
            too_long = fit + (request.max_tokens or 0) > info.context_window or (
                request.max_tokens is not None and request.max_tokens > info.max_output_tokens
            )
            if too_long:
                skipped.append(
                    Attempt(
                        provider=candidate.provider,
                        model=candidate.model,
                        outcome="context_too_long",
                        message=f"about {prompt} prompt tokens + max_tokens do not fit",
                    )
                )
                continue
            fitting.append((info.cost(prompt, min(output, info.max_output_tokens)), candidate))
        fitting.sort(key=lambda pair: pair[0])
        return [c for _cost, c in fitting], skipped


def fallback_chains(catalog: Catalog, config: RouterConfig) -> dict[str, list[str]]:
    """Each model's fallback chain: the configured one (by model or alias), else, with
    ``default_fallbacks``, the other vendors' models of the first tier it is in, in the
    tier's order. ``ValueError`` for a configured name the catalog does not know."""
    chains: dict[str, list[str]] = {}
    if config.default_fallbacks:
        for members in catalog.tiers.values():
            models = [m for m in (catalog.canonical(n) for n in members) if m is not None]
            for model in models:
                vendor = catalog.models[model].provider
                peers = [m for m in models if catalog.models[m].provider != vendor]
                chains.setdefault(model, peers)
    for name, chain in config.fallbacks.items():
        canonical = catalog.canonical(name)
        if canonical is None:
            raise ValueError(f"router.fallbacks: {name!r} is not a model or alias of the catalog")
        for entry in chain:
            try:
                catalog.resolve(entry)
            except UnknownModel:
                raise ValueError(
                    f"router.fallbacks.{name}: {entry!r} is not a model of the catalog"
                ) from None
        chains[canonical] = list(chain)
    return chains


class WrongKind(ValueError):
    """A conversation for an embedding model, or inputs to embed for a chat model."""


class Unsupported(ValueError):
    """No candidate takes a feature the request uses: the request is refused naming
    its field (``param``)."""

    def __init__(self, param: str, feature: str, lacking: list[Attempt]) -> None:
        who = ", ".join(f"{a.provider}/{a.model}" for a in lacking[:6])
        more = f" and {len(lacking) - 6} more" if len(lacking) > 6 else ""
        what = param if feature == param else f"{param} {feature}"
        super().__init__(f"{param}: no candidate model takes {what} ({who}{more}); "
                         f"see the compatibility table in docs/compatibility.md")  # fmt: skip
        self.param = param
        self.lacking = lacking
