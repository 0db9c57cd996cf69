"""The Gaussian-diffusion baseline math (DDPM / DDIM), checked against closed forms and exact oracles.

The sampler tests use Gaussian data N(mu, s^2) per pixel, whose exact noise predictor is
E[eps | x_n] = sqrt(1 - abar) (x_n - sqrt(abar) mu) / (abar s^2 + 1 - abar). With it every sampler is an affine
map of Gaussian noise, so its output law is known exactly (computed here by an independent scalar recursion);
statistical tolerances are 5 standard errors of the sample mean (s / sqrt(N)) and standard deviation
(s / sqrt(2N)), plus the samplers' known discretisation bias where stated.
"""

import math

import pytest
import torch

from dyffusion.baselines.gaussian_diffusion import (
    NoiseSchedule,
    ancestral_sample,
    ddim_sample,
    ddim_steps,
    diffusion_loss,
    q_sample,
)

MU, S = 1.5, 0.3
SHAPE = (16, 2, 32, 32)  # N = 32768 pixels: 5 SE = 0.0083 on the mean, 0.0059 on the std
N = math.prod(SHAPE)


def gaussian_oracle(schedule, mu=MU, s=S):
    """The exact E[eps | x_n] for data N(mu, s^2); ignores the condition."""
    abar = schedule.alphas_cumprod

    def denoiser(noisy, condition, step):
        a = abar[step.long()].to(noisy.dtype).view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (noisy - a.sqrt() * mu) / (a * s * s + 1 - a)

    return denoiser


def x0_affine(a, mu=MU, s=S):
    """(p, q) with predicted x0 = p x_n + q under the Gaussian oracle: the posterior mean E[x0 | x_n]."""
    gain = math.sqrt(a) * s * s / (a * s * s + 1 - a)
    return gain, mu - gain * math.sqrt(a) * mu


def ddpm_law(schedule, mu=MU, s=S):
    """Exact (mean, std) of DDPM's ancestral sampler with the oracle, from x_{T-1} ~ N(0, 1)."""
    abar, betas = schedule.alphas_cumprod.tolist(), schedule.betas.tolist()
    mean, var = 0.0, 1.0
    for n in range(len(abar) - 1, 0, -1):
        p, q = x0_affine(abar[n], mu, s)
        a, a_prev = abar[n], abar[n - 1]
        c_x0, c_x = betas[n] * math.sqrt(a_prev) / (1 - a), math.sqrt(1 - betas[n]) * (1 - a_prev) / (1 - a)
        gain = c_x0 * p + c_x
        mean, var = gain * mean + c_x0 * q, gain ** 2 * var + betas[n] * (1 - a_prev) / (1 - a)
    p, q = x0_affine(abar[0], mu, s)
    return p * mean + q, abs(p) * math.sqrt(var)


def ddim_affine(schedule, steps, mu=MU, s=S):
    """(P, Q) with DDIM(eta=0) output = P x_init + Q under the oracle (DDIM eq. 12 on scalars)."""
    abar = schedule.alphas_cumprod.tolist()
    big_p, big_q = 1.0, 0.0
    for j, n in enumerate(steps):
        a, a_prev = abar[n], abar[steps[j + 1]] if j + 1 < len(steps) else 1.0
        p, q = x0_affine(a, mu, s)
        # x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) (x - sqrt(a) x0) / sqrt(1 - a)
        k = math.sqrt(1 - a_prev) / math.sqrt(1 - a)
        gain, shift = (math.sqrt(a_prev) - k * math.sqrt(a)) * p + k, (math.sqrt(a_prev) - k * math.sqrt(a)) * q
        big_p, big_q = gain * big_p, gain * big_q + shift
    return big_p, big_q


def condition(dtype=torch.float32, batch=SHAPE[0]):
    return torch.zeros(batch, 1, SHAPE[2], SHAPE[3], dtype=dtype)


# ---------------------------------------------------------------------------------------------- schedules

@pytest.mark.parametrize("name", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [1, 50, 1000])
def test_schedules_are_valid(name, steps):
    schedule = NoiseSchedule.named(name, steps)
    betas, abar = schedule.betas, schedule.alphas_cumprod
    assert schedule.num_steps == steps and betas.shape == (steps,) and abar.shape == (steps,)
    assert betas.dtype == torch.float64 and abar.dtype == torch.float64
    assert bool(((betas > 0) & (betas < 1)).all())
    assert bool((abar[1:] < abar[:-1]).all()) and 0 < float(abar[-1]) <= float(abar[0]) < 1
    product, expected = 1.0, []
    for beta in betas.tolist():
        product *= 1 - beta
        expected.append(product)
    assert torch.allclose(abar, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("steps", [1000, 40])
def test_cosine_schedule_follows_the_closed_form(steps):
    """Convention: step n (0-based) is the improved-DDPM t = n + 1, so abar_n = f(n + 1) / f(0)."""
    offset = 0.008
    schedule = NoiseSchedule.cosine(steps)
    n = torch.arange(steps, dtype=torch.float64)
    f = lambda t: torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2  # noqa: E731
    closed = f((n + 1) / steps) / f(torch.zeros((), dtype=torch.float64))
    # The last beta hits the 0.999 clip (f(T) = 0); every earlier step follows the closed form.
    assert torch.allclose(schedule.alphas_cumprod[:-1], closed[:-1], rtol=1e-10, atol=1e-15)
    assert float(schedule.betas[-1]) == pytest.approx(0.999)
    assert float(schedule.betas[:-1].max()) < 0.999


def test_linear_schedule_endpoints():
    betas = NoiseSchedule.linear(1000).betas
    assert float(betas[0]) == pytest.approx(1e-4, rel=1e-12) and float(betas[-1]) == pytest.approx(0.02, rel=1e-12)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    assert torch.equal(NoiseSchedule.named("linear", 1000).betas, betas)


def test_schedule_errors():
    with pytest.raises(ValueError, match="cosine.*linear"):
        NoiseSchedule.named("sigmoid", 100)
    for make in (NoiseSchedule.cosine, NoiseSchedule.linear):
        with pytest.raises(ValueError, match="at least 1"):
            make(0)
    with pytest.raises(ValueError, match="at least 1"):
        NoiseSchedule.named("cosine", -3)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.0, 0.1]))
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule(torch.zeros(0))


# ---------------------------------------------------------------------------------------- forward process

@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_q_sample_matches_the_analytic_marginal(name):
    torch.manual_seed(0)
    schedule = NoiseSchedule.named(name, 1000)
    draws = 100_000
    x0 = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64).view(1, 1, 1, 3).expand(draws, 1, 1, 3)
    for n in (0, 100, 500, 999):
        a = float(schedule.alphas_cumprod[n])
        x = q_sample(x0, torch.full((draws,), n), torch.randn_like(x0), schedule)
        assert x.shape == x0.shape and x.dtype == torch.float64
        mean, var = x.mean(dim=0).flatten(), x.var(dim=0).flatten()
        # Standard errors: sqrt(1 - a / draws) for the mean, (1 - a) sqrt(2 / draws) for the variance.
        assert torch.allclose(mean, math.sqrt(a) * x0[0].flatten(), atol=5 * math.sqrt((1 - a) / draws))
        assert torch.allclose(var, torch.full_like(var, 1 - a), atol=5 * (1 - a) * math.sqrt(2 / draws))


def test_q_sample_uses_each_samples_own_step():
    schedule = NoiseSchedule.linear(100)
    x0, noise = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    x = q_sample(x0, torch.tensor([0, 99]), noise, schedule)
    abar = schedule.alphas_cumprod
    assert torch.allclose(x[0], abar[0].sqrt().float().expand(1, 2, 2))
    assert torch.allclose(x[1], abar[99].sqrt().float().expand(1, 2, 2))


# ------------------------------------------------------------------------------------------------ the loss

def known_x0_oracle(x0, schedule):
    """Recovers the true noise from x_n when x0 is known: eps = (x_n - sqrt(abar) x0) / sqrt(1 - abar)."""
    abar = schedule.alphas_cumprod

    def denoiser(noisy, condition, step):
        assert step.dtype == torch.float32 and step.shape == (noisy.shape[0],)
        a = abar[step.long()].to(noisy.dtype).view(-1, 1, 1, 1)
        return (noisy - a.sqrt() * x0) / (1 - a).sqrt()

    return denoiser


def test_loss_of_the_oracle_is_zero_and_of_zero_is_one():
    torch.manual_seed(1)
    schedule = NoiseSchedule.cosine(1000)
    x0, cond = torch.randn(8, 3, 16, 16) + 2, torch.randn(8, 1, 16, 16)
    assert float(diffusion_loss(known_x0_oracle(x0, schedule), x0, cond, schedule)) < 1e-8
    steps = torch.tensor([0, 1, 10, 100, 500, 900, 998, 998])  # not 999: sqrt(abar) ~ 5e-5 amplifies rounding
    assert float(diffusion_loss(known_x0_oracle(x0, schedule), x0, cond, schedule, step=steps)) < 1e-6
    zero = lambda noisy, condition, step: torch.zeros_like(noisy)  # noqa: E731
    # Zero prediction: the loss is mean(eps^2) over 6144 draws; standard error sqrt(2 / 6144) = 0.018.
    assert float(diffusion_loss(zero, x0, cond, schedule)) == pytest.approx(1.0, abs=5 * math.sqrt(2 / x0.numel()))


def test_default_steps_are_uniform_per_sample():
    torch.manual_seed(2)
    schedule, seen = NoiseSchedule.linear(10), []

    def record(noisy, condition, step):
        seen.append(step)
        return torch.zeros_like(noisy)

    for _ in range(50):
        diffusion_loss(record, torch.zeros(20, 1, 2, 2), torch.zeros(20, 1, 2, 2), schedule)
    steps = torch.cat(seen)
    assert steps.dtype == torch.float32 and steps.shape == (1000,)
    assert set(steps.long().tolist()) == set(range(10))  # every step drawn, none outside 0..T-1


def test_loss_averages_over_valid_points_only():
    torch.manual_seed(3)
    schedule = NoiseSchedule.cosine(100)
    x0, cond = torch.randn(4, 2, 8, 8), torch.zeros(4, 1, 8, 8)
    valid = torch.rand(4, 8, 8) > 0.3
    oracle = known_x0_oracle(x0, schedule)

    def wrong_where_invalid(noisy, condition, step):
        return oracle(noisy, condition, step) + 10.0 * (~valid).unsqueeze(1)

    assert float(diffusion_loss(wrong_where_invalid, x0, cond, schedule, valid=valid)) < 1e-8
    assert float(diffusion_loss(wrong_where_invalid, x0, cond, schedule)) > 1
    # A constant error c everywhere gives c^2 whatever the mask; an (H, W) mask broadcasts over the batch.
    off_by_two = lambda noisy, condition, step: oracle(noisy, condition, step) + 2.0  # noqa: E731
    assert float(diffusion_loss(off_by_two, x0, cond, schedule, valid=valid[0])) == pytest.approx(4.0, rel=1e-4)


def test_loss_backpropagates_to_the_denoiser():
    schedule = NoiseSchedule.cosine(100)
    scale = torch.nn.Parameter(torch.tensor(0.5))
    loss = diffusion_loss(lambda noisy, condition, step: scale * noisy, torch.randn(2, 1, 4, 4),
                          torch.zeros(2, 1, 4, 4), schedule)
    loss.backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)


# ------------------------------------------------------------------------------------------------ samplers

@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_ancestral_sampling_recovers_gaussian_data(name):
    torch.manual_seed(4)
    schedule = NoiseSchedule.named(name, 1000)
    x = ancestral_sample(gaussian_oracle(schedule), condition(), SHAPE, schedule)
    mean, std = float(x.mean()), float(x.std())
    exact_mean, exact_std = ddpm_law(schedule)
    se_mean, se_std = S / math.sqrt(N), S / math.sqrt(2 * N)
    # The sampler's own law, exactly:
    assert mean == pytest.approx(exact_mean, abs=5 * se_mean) and std == pytest.approx(exact_std, abs=5 * se_std)
    # ... which is the data's up to the beta_tilde variance choice (std low by 0.6% cosine, 1.2% linear, T=1000).
    assert exact_std == pytest.approx(S, rel=0.015) and exact_mean == pytest.approx(MU, abs=1e-4)
    assert mean == pytest.approx(MU, abs=5 * se_mean) and std == pytest.approx(S, abs=5 * se_std + 0.015 * S)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_ddim_is_the_exact_deterministic_map_and_recovers_gaussian_data(name):
    schedule = NoiseSchedule.named(name, 1000)
    torch.manual_seed(5)
    x = ddim_sample(gaussian_oracle(schedule), condition(torch.float64), SHAPE, schedule, num_steps=50)
    torch.manual_seed(5)
    initial = torch.randn(SHAPE, dtype=torch.float64)  # the sampler's first draw
    gain, shift = ddim_affine(schedule, ddim_steps(1000, 50))
    assert torch.allclose(x, gain * initial + shift, atol=1e-9)
    # Law N(shift, gain^2): mean exact; 50 Euler-like steps under-disperse narrow data (std -4.5% cosine, -8.5% linear).
    assert shift == pytest.approx(MU, abs=5e-3) and abs(gain) == pytest.approx(S, rel=0.1)
    assert float(x.mean()) == pytest.approx(MU, abs=5e-3 + 5 * S / math.sqrt(N))
    assert float(x.std()) == pytest.approx(S, rel=0.1)
    # Deterministic given the initial noise (eta = 0 draws nothing else).
    torch.manual_seed(5)
    again = ddim_sample(gaussian_oracle(schedule), condition(torch.float64), SHAPE, schedule, num_steps=50)
    assert torch.equal(x, again)


def test_ddim_with_all_steps_and_eta_one_is_ancestral_sampling():
    schedule = NoiseSchedule.cosine(1000)
    oracle, cond = gaussian_oracle(schedule), condition(torch.float64)
    torch.manual_seed(6)
    x = ddim_sample(oracle, cond, SHAPE, schedule, num_steps=1000, eta=1.0)
    # Same random draws in the same order (none at the last step), so the same samples up to rounding.
    torch.manual_seed(6)
    assert torch.allclose(x, ancestral_sample(oracle, cond, SHAPE, schedule), atol=1e-8)
    assert float(x.mean()) == pytest.approx(MU, abs=5 * S / math.sqrt(N))
    assert float(x.std()) == pytest.approx(S, abs=5 * S / math.sqrt(2 * N) + 0.015 * S)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_point_mass_data_is_recovered(name):
    torch.manual_seed(7)
    schedule = NoiseSchedule.named(name, 1000)
    oracle = gaussian_oracle(schedule, mu=MU, s=1e-3)
    shape = (4, 2, 16, 16)
    for x in (ancestral_sample(oracle, condition(batch=4)[..., :16, :16], shape, schedule),
              ddim_sample(oracle, condition(batch=4)[..., :16, :16], shape, schedule, num_steps=20)):
        assert float((x - MU).abs().max()) < 5e-3


def test_clip_bounds_the_samples():
    torch.manual_seed(8)
    schedule = NoiseSchedule.cosine(100)
    oracle, cond = gaussian_oracle(schedule), condition(batch=2)
    x = ancestral_sample(oracle, cond, (2, 1, 32, 32), schedule, clip=1.0)
    assert float(x.max()) <= 1.0 and float(x.min()) >= -1.0
    x = ddim_sample(oracle, cond, (2, 1, 32, 32), schedule, num_steps=10, clip=1.0)
    assert float(x.max()) <= 1.0 + 1e-6


def test_ddim_step_subsequence():
    assert ddim_steps(100, 5) == [99, 74, 50, 25, 0]
    assert ddim_steps(1000, 1000) == list(range(999, -1, -1))
    for total, count in [(1000, 50), (1000, 999), (7, 3), (10, 2)]:
        steps = ddim_steps(total, count)
        assert len(steps) == count and steps[0] == total - 1 and steps[-1] == 0
        assert all(a > b for a, b in zip(steps, steps[1:]))
    assert ddim_steps(10, 1) == [9]  # one step: predict x0 straight from pure noise


def test_sampler_calls_shapes_dtypes_and_no_grad():
    schedule = NoiseSchedule.linear(10)
    weight = torch.nn.Parameter(torch.tensor(0.1))
    calls = []

    def denoiser(noisy, cond, step):
        calls.append((noisy.shape, noisy.dtype, cond.shape, step.dtype, step.shape, step.tolist()))
        return weight * noisy

    for dtype in (torch.float32, torch.float64):
        cond = torch.zeros(3, 2, 4, 5, dtype=dtype)
        calls.clear()
        x = ancestral_sample(denoiser, cond, (3, 6, 4, 5), schedule, progress=True)
        assert x.shape == (3, 6, 4, 5) and x.dtype == dtype and not x.requires_grad
        assert [c[-1][0] for c in calls] == list(range(9, -1, -1))
        assert all(c[:5] == ((3, 6, 4, 5), dtype, (3, 2, 4, 5), torch.float32, (3,)) for c in calls)
        calls.clear()
        x = ddim_sample(denoiser, cond, (3, 6, 4, 5), schedule, num_steps=4, progress=True)
        assert x.shape == (3, 6, 4, 5) and x.dtype == dtype and not x.requires_grad
        assert [c[-1][0] for c in calls] == ddim_steps(10, 4) == [9, 6, 3, 0]


def test_sampler_errors():
    schedule, cond = NoiseSchedule.cosine(10), torch.zeros(2, 1, 4, 4)
    zero = lambda noisy, condition, step: torch.zeros_like(noisy)  # noqa: E731
    with pytest.raises(ValueError, match="1..10"):
        ddim_sample(zero, cond, (2, 1, 4, 4), schedule, num_steps=11)
    with pytest.raises(ValueError, match="1..10"):
        ddim_sample(zero, cond, (2, 1, 4, 4), schedule, num_steps=0)
    with pytest.raises(ValueError, match="batch size"):
        ancestral_sample(zero, cond, (3, 1, 4, 4), schedule)
