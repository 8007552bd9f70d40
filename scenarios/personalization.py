"""Personalization streams: the same images, each experience a new user who labels them differently.

- `preference-<dataset>`: user u relabels class y as `label_maps[u][y]`, a permutation of the classes
  drawn from the run seed (distinct for every user). Ten outputs shared by all users, so a single shared
  parameter point cannot satisfy them all: static weights must compromise or forget.
- `inverse-<dataset>`: pairs of exactly opposed users, y -> pi_p(y) and y -> n-1-pi_p(y) (pair 0 uses the
  identity, so its two users are "y" and "n-1-y"): the classification analogue of HY-WU's blur/deblur and
  ageing/de-ageing pairs.

Both are domain-incremental: no task label at test time, one head of n classes. Who the user is must
therefore come with the instance, in two forms:

- a condition token, the one-hot user id (`ScenarioInfo.condition_dim = n_users`): minibatches are
  `[x, y, c, t]` and conditioned strategies (HY-WU) read `c`;
- the same token in the input, so plain baselines are not denied it: an extra image channel, zero but for
  the user's band of pixels (the flattened H*W plane cut into n_users contiguous bands, i.e. 7 rows each
  for 28x28 images and 4 users), set to 1/sqrt(band size) so the plane has unit norm. The image channels
  are untouched. Unit norm matters: a band of ones acts like a bias with ~200x the gain and made plain
  SGD on Fashion-MNIST unstable (0.53 vs 0.71 accuracy after 5 epochs at lr 0.1); at unit norm one MLP
  trained on all four users jointly reaches about the single-user accuracy on each (0.77-0.80), so the
  information is usable. `user_in_input=false` leaves the input as the dataset's (then only the token
  says who the user is).

Every experience uses the same training images by default (`same_images=true`), so the users conflict on
exactly the same inputs; the test images are the same for every user.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from hywu_bench.config import RunSpec
from hywu_bench.data import ExperienceInfo, ExperienceTensors, Scenario, ScenarioInfo, make_scenario
from scenarios import transforms as T
from scenarios.catalog import InverseOptions, PreferenceOptions, Profile
from scenarios.datasets import load_dataset
from scenarios.drift import sizes, subsample


def user_plane(n: int, h: int, w: int, user: int, n_users: int) -> Tensor:
    """(n, 1, H, W): zeros, and 1/sqrt(band size) on the user's band of the flattened plane (unit norm)."""
    if not 0 <= user < n_users <= h * w:
        raise ValueError(f"user {user} of {n_users} cannot be encoded in a {h}x{w} plane")
    band = torch.tensor_split(torch.arange(h * w), n_users)[user]
    plane = torch.zeros(h * w)
    plane[band] = band.numel() ** -0.5
    return plane.view(1, 1, h, w).expand(n, 1, h, w).clone()


def one_hot(n: int, user: int, n_users: int) -> Tensor:
    token = torch.zeros(n, n_users)  # (N, n_users)
    token[:, user] = 1.0
    return token


def with_user(x: Tensor, user: int, n_users: int, in_input: bool) -> tuple[Tensor, Tensor]:
    """The input (with the user plane appended as a last channel if `in_input`) and the condition tokens."""
    n, _, h, w = x.shape
    if in_input:
        x = torch.cat([x, user_plane(n, h, w, user, n_users)], dim=1)  # (N, C+1, H, W)
    return x, one_hot(n, user, n_users)


def preference_maps(n_users: int, n_classes: int, seed: int, purpose: str = "preference") -> Tensor:
    """(n_users, n_classes): row u is user u's label for each class, a seeded permutation, no two alike."""
    gen = T.generator(seed, purpose)
    maps: list[Tensor] = []
    while len(maps) < n_users:
        perm = torch.randperm(n_classes, generator=gen)
        if not any(torch.equal(perm, m) for m in maps):
            maps.append(perm)
    return torch.stack(maps)


def inverse_maps(n_pairs: int, n_classes: int, seed: int) -> Tensor:
    """(2 n_pairs, n_classes): pair p is pi_p and n-1-pi_p; pi_0 is the identity, later ones seeded."""
    bases = [torch.arange(n_classes)]
    if n_pairs > 1:
        bases += list(preference_maps(n_pairs, n_classes, seed, "inverse")[1:])
    return torch.stack([m for base in bases for m in (base, n_classes - 1 - base)])




def user_scenario(name: str, profile: Profile, spec: RunSpec, options: PreferenceOptions | InverseOptions,
                  maps: Callable[[int], Tensor], describe: Callable[[int, Tensor], str]) -> Scenario:
    data = load_dataset(profile.dataset, spec.data_root, spec.download)
    label_maps = maps(data.n_classes)  # (n_users, n_classes)
    n_users = label_maps.shape[0]
    n_train, n_test = sizes(profile, options)
    x_test, y_test = subsample(data.x_test, data.y_test, n_test, T.generator(spec.seed, name, "test"))
    train, test, infos = [], [], []
    for u in range(n_users):
        draw = 0 if options.same_images else u
        x_tr, y_tr = subsample(data.x_train, data.y_train, n_train, T.generator(spec.seed, name, "train", draw))
        for x, y, parts in ((x_tr, y_tr, train), (x_test, y_test, test)):
            x_u, token = with_user(x, u, n_users, options.user_in_input)
            parts.append(ExperienceTensors(x_u, label_maps[u][y], 0, token))
        classes = tuple(sorted(set(train[-1].y.tolist())))
        infos.append(ExperienceInfo(u, classes, data.name, describe(u, label_maps[u]), user=u,
                                    n_train=len(y_tr), n_test=len(y_test)))
    c, h, w = data.input_shape
    shape = (c + 1, h, w) if options.user_in_input else (c, h, w)
    info = ScenarioInfo(name, "domain", data.n_classes, shape, tuple(infos), condition_dim=n_users,
                        recommended=dict(profile.recommended),
                        options={**vars(options), "label_maps": label_maps.tolist()})
    return make_scenario(train, test, info)


def _relabel(label_map: Tensor) -> str:
    return "relabel(" + " ".join(map(str, label_map.tolist())) + ")"


def build_preference(spec: RunSpec, options: PreferenceOptions, *, name: str, profile: Profile) -> Scenario:
    """`preference-<dataset>` (declared in scenarios/catalog.py)."""
    return user_scenario(name, profile, spec, options, lambda n: preference_maps(options.n_users, n, spec.seed),
                         lambda u, m: _relabel(m))


def build_inverse(spec: RunSpec, options: InverseOptions, *, name: str, profile: Profile) -> Scenario:
    """`inverse-<dataset>` (declared in scenarios/catalog.py)."""
    def describe(u: int, m: Tensor) -> str:
        if u < 2:
            return "identity" if u == 0 else "reverse"
        return _relabel(m)

    return user_scenario(name, profile, spec, options, lambda n: inverse_maps(options.n_pairs, n, spec.seed), describe)
