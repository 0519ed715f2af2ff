"""Coreset baselines at their published setting: forgetting counted and ranked as Toneva et
al. 2019 (and a ranking that puts never-learned images last), herding / k-center on a trained
embedding network; the count and the trained network are shared artifacts.  Toy data only."""
import torch

from kddbench.condense import CondenseRequest
from kddbench.context import RunContext
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator
from kddbench.store import ArtifactCache
from kddbench_plugins.condensation import coreset


def _request(tmp_path, ipc=2, seed=0, cache=True):
    ctx = RunContext(registry=get_registry())
    data = ctx.data("toy")

    def build(s):
        return ctx.build_net("convnet", data, s, options={"depth": 2, "width": 8})

    artifacts = ArtifactCache(tmp_path / "cache", enabled=cache)
    return CondenseRequest(data=data, ipc=ipc, arch="convnet", build_net=build,
                           generator=make_generator(seed), device=ctx.device, seed=seed,
                           artifacts=artifacts,
                           net_key={"arch": "convnet", "options": {"depth": 2, "width": 8}})


def test_tracker_counts_correct_to_incorrect_between_consecutive_presentations():
    t = coreset.ForgettingTracker(3)
    for row in ([0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]):
        t.update(torch.arange(3), torch.tensor(row, dtype=torch.bool))
    # example 0: 0 1 0 1 0 -> 2 events; example 1: 1 0 1 1 1 -> 1; example 2: never learned
    assert t.events.tolist() == [2, 1, 0] and t.learned.tolist() == [True, True, False]
    assert t.scores()[2] == float("inf")


def test_rankings_of_never_learned_images():
    events = torch.tensor([3, 0, 1, 0, 2])
    learned = torch.tensor([True, True, True, False, False])
    g = torch.Generator().manual_seed(0)
    most = coreset.forgetting_order(events, learned, 2, "most", g).tolist()
    assert sorted(most) == [3, 4]  # Toneva et al.: never learned = forgotten most
    assert coreset.forgetting_order(events, learned, 2, "most_learned", g).tolist() == [0, 2]
    assert coreset.forgetting_order(events, learned, 5, "most_learned", g).tolist()[3:] in (
        [3, 4], [4, 3])  # never learned only after every learned one
    assert coreset.forgetting_order(events, learned, 1, "least", g).tolist() == [1]


def test_forgetting_counts_are_shared_and_a_cached_count_picks_the_same_images(tmp_path):
    opts = {"epochs": 2, "batch_size": 16}
    fresh = coreset.forgetting(_request(tmp_path / "a", cache=False), **opts)
    req = _request(tmp_path / "b")
    first = coreset.forgetting(req, **opts)
    assert req.artifacts.misses == 1 and req.artifacts.hits == 0
    assert torch.equal(first.images, fresh.images)
    again = _request(tmp_path / "b")
    second = coreset.forgetting(again, **opts)  # loaded: same generator state, same picks
    assert again.artifacts.hits == 1 and torch.equal(second.images, first.images)
    other = _request(tmp_path / "b", ipc=3)
    learned = coreset.forgetting(other, keep="most_learned", **opts)  # other ipc and keep
    assert other.artifacts.hits == 1 and learned.images.shape[0] == 3 * 4
    assert learned.info["picked_never_learned"] <= max(0, 12 - (40 * 4 - learned.info[
        "never_learned"]))
    assert second.info["never_learned"] == learned.info["never_learned"]


def test_herding_on_a_trained_embedding_is_shared_by_kcenter_and_every_ipc(tmp_path):
    fresh = coreset.herding(_request(tmp_path / "a", cache=False), train_epochs=1)
    req = _request(tmp_path / "b")
    trained = coreset.herding(req, train_epochs=1)
    assert torch.equal(trained.images, fresh.images) and req.artifacts.misses == 1
    untrained = coreset.herding(_request(tmp_path / "c", cache=False))
    assert not torch.equal(untrained.images, trained.images)  # the training changes the picks
    k = _request(tmp_path / "b", ipc=3)
    coreset.kcenter(k, train_epochs=1)
    assert k.artifacts.hits == 1  # the same trained network
