"""An RNN controller over any :class:`~azjax.search.space.GenomeSpec`, trained by policy gradients.

The policy is a one-layer Flax LSTM (100 units by default) that emits
the categorical genes position by position. The input at step ``t`` is the embedding of the gene
chosen at ``t - 1`` (a learned start embedding at ``t = 0``); every position has its own embedding
rows and its own output head, padded to the widest choice count and masked to ``-inf`` beyond the
position's count, so one ``lax.scan`` covers the whole genome and compiles once. Sampling, the
log-probability and the entropy of a genome come out of the same scan; with ``actions`` given the
scan is teacher-forced and scores those genes (what the gradient needs).

Float genes (``GenomeSpec.num_floats > 0``) get an independent Gaussian per gene (learned mean and
log-std) whose sample is clipped to the bounds; the clipped tails make its log-probability an
approximation at the bounds.

Updates (``tell``):

* ``"reinforce"``: loss ``-mean((R - b) * log p) - entropy_weight * mean(H)``, one Adam step per
  batch; ``b`` is an exponential moving average of the batch-mean reward (decay 0.95), set to the
  first batch's mean at the first tell.
* ``"ppo"``: ``ppo_epochs`` full-batch Adam steps on the clipped surrogate
  ``-mean(min(r A, clip(r, 1-eps, 1+eps) A))`` with ``r = p_new / p_old`` over the whole genome
  and the same EMA-baseline advantage. NASNet leaves clip, epochs and value head unstated;
  we use eps 0.2, 4 epochs, no value head.

The strategy follows the harness interface (:mod:`azjax.search.base`): ``batch_size``, pure
jitted ``init / ask / tell`` with ``self`` static, and a ``flax.struct.dataclass`` state holding
the policy parameters, the Adam state and the baseline, so ``search.run`` checkpoints and resumes
it exactly.

The space must expose ``genome_spec`` plus jittable ``encode`` / ``decode`` (see
:class:`~azjax.search.space.SearchSpace`). AutoML-Zero's ``ProgramSpace`` has variable-length
programs and no ``genome_spec``, so the controller rejects it with a ``ValueError``; wrap it in
``zero.ProgramGenomeSpace`` to search programs with the controller.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from azjax.search import base

PyTree = Any

__all__ = ["Controller", "ControllerState", "PolicyNetwork"]

ALGORITHMS = ("reinforce", "ppo")


class PolicyNetwork(nn.Module):
    """LSTM policy over a fixed sequence of categorical positions (plus Gaussian float genes).

    Attributes:
        num_choices: per-position choice counts (static).
        num_floats: number of float genes.
        hidden: LSTM units.
        embed: embedding width of the previous choice.
        init_scale: weights are drawn from U(-init_scale, init_scale) (NASNet: 0.1).
    """

    num_choices: tuple[int, ...]
    num_floats: int = 0
    hidden: int = 100
    embed: int = 32
    init_scale: float = 0.1

    def setup(self):
        init = nn.initializers.uniform(2 * self.init_scale)
        shifted = lambda k, s, d=jnp.float32: init(k, s, d) - self.init_scale  # noqa: E731
        n = len(self.num_choices)
        width = max(self.num_choices) if n else 1
        # Row 0 is the start token; position t's choices use rows offsets[t] + 1 + choice.
        self.embeddings = self.param("embeddings", shifted, (1 + sum(self.num_choices),
                                                            self.embed))
        self.head_w = self.param("head_w", shifted, (max(n, 1), self.hidden, width))
        self.head_b = self.param("head_b", nn.initializers.zeros, (max(n, 1), width))
        self.cell = nn.OptimizedLSTMCell(self.hidden, kernel_init=shifted,
                                         recurrent_kernel_init=shifted)
        self.float_mean = self.param("float_mean", nn.initializers.zeros, (self.num_floats,))
        self.float_log_std = self.param("float_log_std", nn.initializers.zeros,
                                        (self.num_floats,))

    def __call__(self, key: jax.Array, actions: jax.Array | None = None):
        """Sample (``actions is None``) or score ``actions``: returns ``(ints, log_prob,
        entropy)`` of the categorical genes (entropy summed over positions)."""
        n = len(self.num_choices)
        counts = jnp.asarray(self.num_choices, jnp.int32)
        offsets = jnp.asarray(np.concatenate([[0], np.cumsum(self.num_choices)[:-1]]), jnp.int32)
        width = self.head_w.shape[-1]
        keys = jax.random.split(key, n)
        forced = actions is not None
        xs = (jnp.arange(n), keys, actions if forced else jnp.zeros((n,), jnp.int32))

        def step(mdl, carry, x):
            lstm, prev_row = carry
            t, k, a_forced = x
            inp = mdl.embeddings[prev_row]
            lstm, h = mdl.cell(lstm, inp)
            logits = h @ mdl.head_w[t] + mdl.head_b[t]
            valid = jnp.arange(width) < counts[t]
            # A large finite negative (not -inf) keeps p * log p and its gradient finite.
            logits = jnp.where(valid, logits, -1e9)
            logp_all = jax.nn.log_softmax(logits)
            a = a_forced if forced else jax.random.categorical(k, logits)
            p = jnp.exp(logp_all)
            ent = -jnp.sum(jnp.where(valid, p * logp_all, 0.0))
            return (lstm, offsets[t] + 1 + a), (a.astype(jnp.int32), logp_all[a], ent)

        carry0 = (self.cell.initialize_carry(jax.random.key(0), (self.embed,)),
                  jnp.zeros((), jnp.int32))
        if n == 0:
            return jnp.zeros((0,), jnp.int32), jnp.zeros(()), jnp.zeros(())
        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False})
        _, (ints, logps, ents) = scan(self, carry0, xs)
        return ints, jnp.sum(logps), jnp.sum(ents)

    def floats(self, key: jax.Array, low: float, high: float,
               values: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Sample (or score ``values``) the float genes: ``(floats, log_prob, entropy)``."""
        std = jnp.exp(self.float_log_std)
        if values is None:
            values = self.float_mean + std * jax.random.normal(key, (self.num_floats,))
            values = jnp.clip(values, low, high)
        z = (values - self.float_mean) / std
        logp = jnp.sum(-0.5 * z**2 - self.float_log_std - 0.5 * jnp.log(2 * jnp.pi))
        ent = jnp.sum(self.float_log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e))
        return values, logp, ent


@flax.struct.dataclass
class ControllerState:
    """State of :class:`Controller`.

    Attributes:
        params: the policy parameters.
        opt_state: the Adam state.
        baseline: float32 scalar, EMA of batch-mean rewards (0 before the first tell).
        count: int32 scalar, genomes told so far.
        updates: int32 scalar, policy updates made so far.
        best_genome: best genome ever told; best_fitness: its fitness (``-inf`` before any).
        last_entropy: mean policy entropy over the last told batch (NaN before any).
        last_loss: the last update's loss (NaN before any).
    """

    params: PyTree
    opt_state: PyTree
    baseline: jax.Array
    count: jax.Array
    updates: jax.Array
    best_genome: PyTree
    best_fitness: jax.Array
    last_entropy: jax.Array
    last_loss: jax.Array


class Controller(base.Strategy):
    """RNN-controller search strategy (NASNet's RL searcher) with the harness's ask/tell API.

    Args:
        space: a space with ``genome_spec``, ``encode`` and ``decode`` (e.g. ``IntVectorSpace``,
            ``nas.CellSpace``).
        algorithm: ``"ppo"`` (NASNet 2018) or ``"reinforce"`` (NAS 2017).
        batch_size: genomes per ask (20 in NASNet).
        learning_rate: Adam lr (NASNet 3.5e-4; AmoebaNet's re-tuned RL baseline used 8e-4).
        hidden: LSTM units (100).
        embed: embedding width of the previous choice (unstated in the paper; 32).
        entropy_weight: entropy bonus weight (1e-5).
        baseline_decay: EMA decay of the reward baseline (0.95).
        ppo_epochs: full-batch PPO steps per batch (unstated in the paper; 4).
        ppo_clip: PPO ratio clip epsilon (unstated; 0.2).
        init_scale: uniform init range of the policy weights (0.1).
        non_finite_reward: reward used for NaN/inf fitness in the update (the best-genome
            bookkeeping still treats NaN as the worst).

    Raises:
        ValueError: naming the bad argument, before anything is traced.
    """

    hparam_names = ("algorithm", "batch_size", "learning_rate", "hidden", "embed",
                    "entropy_weight", "baseline_decay", "ppo_epochs", "ppo_clip", "init_scale",
                    "non_finite_reward")

    def __init__(self, space: Any, algorithm: str = "ppo", batch_size: int = 20,
                 learning_rate: float = 3.5e-4, hidden: int = 100, embed: int = 32,
                 entropy_weight: float = 1e-5, baseline_decay: float = 0.95,
                 ppo_epochs: int = 4, ppo_clip: float = 0.2, init_scale: float = 0.1,
                 non_finite_reward: float = 0.0):
        base.check_space(space)
        spec = getattr(space, "genome_spec", None)
        if spec is None or not callable(getattr(space, "encode", None)) or not callable(
                getattr(space, "decode", None)):
            raise ValueError(
                f"space: {type(space).__name__} has no genome_spec, encode or decode, so a policy "
                "cannot emit its genomes position by position (e.g. AutoML-Zero's ProgramSpace "
                "holds variable-length programs: wrap it in zero.ProgramGenomeSpace); or use "
                "RegularizedEvolution or RandomSearch")
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm: expected one of {ALGORITHMS}, got {algorithm!r}")
        for name, value in (("learning_rate", learning_rate), ("init_scale", init_scale),
                            ("ppo_clip", ppo_clip)):
            if not float(value) > 0:
                raise ValueError(f"{name}: must be > 0, got {value}")
        if not 0.0 <= float(baseline_decay) < 1.0:
            raise ValueError(f"baseline_decay: must be in [0, 1), got {baseline_decay}")
        if not float(entropy_weight) >= 0.0:
            raise ValueError(f"entropy_weight: must be >= 0, got {entropy_weight}")
        self.space = space
        self.spec = spec
        self.algorithm = algorithm
        self.batch_size = base.check_int("batch_size", batch_size, 1)
        self.learning_rate = float(learning_rate)
        self.hidden = base.check_int("hidden", hidden, 1)
        self.embed = base.check_int("embed", embed, 1)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.ppo_epochs = base.check_int("ppo_epochs", ppo_epochs, 1)
        self.ppo_clip = float(ppo_clip)
        self.init_scale = float(init_scale)
        self.non_finite_reward = float(non_finite_reward)
        self.network = PolicyNetwork(tuple(spec.num_choices), spec.num_floats, self.hidden,
                                     self.embed, self.init_scale)
        self.optimizer = optax.adam(self.learning_rate)

    @functools.partial(jax.jit, static_argnames=("self",))
    def log_prob(self, params: PyTree, genomes: PyTree) -> tuple[jax.Array, jax.Array]:
        """``(log_prob [B], entropy [B])`` of a batch of genomes under ``params``."""
        return self._score(params, genomes)

    def metrics(self, state: ControllerState) -> dict[str, jax.Array]:
        """Policy entropy, baseline and last loss (read by the run loop's callbacks)."""
        return {"policy_entropy": state.last_entropy, "reward_baseline": state.baseline,
                "policy_loss": state.last_loss, "policy_updates": state.updates}

    def _init(self, key: jax.Array) -> ControllerState:
        """Fresh policy parameters (U(-init_scale, init_scale)), Adam state and zero baseline."""
        k_params, k_template = jax.random.split(key)
        params = self.network.init(k_params, jax.random.key(0))["params"]
        template = base.zeros_genome(self.space, k_template)
        nan = jnp.array(jnp.nan, jnp.float32)
        return ControllerState(
            params=params, opt_state=self.optimizer.init(params),
            baseline=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32), best_genome=template,
            best_fitness=jnp.array(-jnp.inf, jnp.float32), last_entropy=nan, last_loss=nan)

    def _sample_one(self, params: PyTree, key: jax.Array) -> PyTree:
        k_int, k_float = jax.random.split(key)
        ints, _, _ = self.network.apply({"params": params}, k_int)
        floats = jnp.zeros((0,), jnp.float32)
        if self.spec.num_floats:
            floats, _, _ = self.network.apply(
                {"params": params}, k_float, self.spec.float_low, self.spec.float_high,
                method=PolicyNetwork.floats)
        return self.space.decode(ints, floats)

    def _ask(self, key: jax.Array, state: ControllerState) -> tuple[PyTree, ControllerState]:
        """``batch_size`` genomes sampled from the current policy."""
        keys = jax.random.split(key, self.batch_size)
        genomes = jax.vmap(lambda k: self._sample_one(state.params, k))(keys)
        return genomes, state

    def _score_one(self, params: PyTree, genome: PyTree) -> tuple[jax.Array, jax.Array]:
        ints, floats = self.space.encode(genome)
        _, logp, ent = self.network.apply({"params": params}, jax.random.key(0),
                                          jnp.asarray(ints, jnp.int32))
        if self.spec.num_floats:
            _, flp, fent = self.network.apply(
                {"params": params}, jax.random.key(0), self.spec.float_low,
                self.spec.float_high, jnp.asarray(floats, jnp.float32),
                method=PolicyNetwork.floats)
            logp, ent = logp + flp, ent + fent
        return logp, ent

    def _score(self, params: PyTree, genomes: PyTree) -> tuple[jax.Array, jax.Array]:
        return jax.vmap(lambda g: self._score_one(params, g))(genomes)

    def _tell(self, genomes: PyTree, fitness: jax.Array,
              state: ControllerState) -> ControllerState:
        """One REINFORCE step or ``ppo_epochs`` PPO steps on the batch; EMA baseline update."""
        base.check_fitness_shape(fitness, self.batch_size)
        fitness = base.sanitize_fitness(fitness)
        reward = jnp.where(jnp.isfinite(fitness), fitness, self.non_finite_reward)
        batch_mean = jnp.mean(reward)
        # The first batch sets the baseline, so the first update is not dominated by R - 0.
        baseline = jnp.where(state.count == 0, batch_mean, state.baseline)
        advantage = jax.lax.stop_gradient(reward - baseline)
        old_logp = jax.lax.stop_gradient(self._score(state.params, genomes)[0])

        def loss_fn(params):
            logp, ent = self._score(params, genomes)
            if self.algorithm == "reinforce":
                pg = -jnp.mean(advantage * logp)
            else:
                ratio = jnp.exp(logp - old_logp)
                clipped = jnp.clip(ratio, 1.0 - self.ppo_clip, 1.0 + self.ppo_clip)
                pg = -jnp.mean(jnp.minimum(ratio * advantage, clipped * advantage))
            return pg - self.entropy_weight * jnp.mean(ent), jnp.mean(ent)

        def update(carry, _):
            params, opt_state = carry
            (loss, ent), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            upd, opt_state = self.optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), (loss, ent)

        n_steps = 1 if self.algorithm == "reinforce" else self.ppo_epochs
        (params, opt_state), (losses, ents) = jax.lax.scan(
            update, (state.params, state.opt_state), None, length=n_steps)
        best_genome, best_fitness = base.update_best(
            state.best_genome, state.best_fitness, state.count, genomes, fitness)
        d = self.baseline_decay
        return state.replace(
            params=params, opt_state=opt_state,
            baseline=d * baseline + (1.0 - d) * batch_mean,
            count=state.count + self.batch_size, updates=state.updates + n_steps,
            best_genome=best_genome, best_fitness=best_fitness,
            last_entropy=ents[0], last_loss=losses[0])
