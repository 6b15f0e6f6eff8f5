"""Tests for building the synthetic corpus (tiny preset): determinism, cache, manifests, splits, speaker ID."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic import (
    CorpusCard,
    build_corpus,
    build_user_sets,
    ensure_corpus,
    plan_challenge,
    plan_corpus,
    plan_sealed,
)
from kospeech.data.synthetic.corpus import PRESETS
from kospeech.errors import ConfigError
from kospeech.vocabs import UnknownCharacterError, Vocabulary


def _files(root: Path):
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "seed0"
    return build_corpus(root, preset="tiny", seed=0, num_workers=2)


@pytest.fixture(scope="module")
def manifests(corpus):
    vocab = Vocabulary.from_csv(corpus.vocab_path)
    entries = {"base/" + split: read_manifest(corpus.base_manifest(split), vocab) for split in ("train", "dev", "test")}
    for user in corpus.users:
        for split in ("enroll", "test"):
            entries[f"users/{user}/{split}"] = read_manifest(corpus.user_manifest(user, split), vocab)
    return entries


def test_layout_and_card(corpus):
    root = corpus.root
    for name in ["corpus.json", "vocab.csv", "utterances.tsv", "base/train.tsv", "base/dev.tsv", "base/test.tsv"]:
        assert (root / name).is_file(), name
    sizes = PRESETS["tiny"]
    assert corpus.users == [f"user{i + 1:02d}" for i in range(sizes.num_users)]
    for user in corpus.users:
        assert (root / "users" / user / "enroll.tsv").is_file() and (root / "users" / user / "test.tsv").is_file()
    card = json.loads((root / "corpus.json").read_text(encoding="utf-8"))
    assert card["preset"] == "tiny" and card["seed"] == 0
    expected = sizes.num_base_speakers * sizes.utterances_per_speaker + sizes.num_users * (
        sizes.enroll_per_user + sizes.test_per_user
    )
    assert card["totals"]["utterances"] == expected
    assert card["totals"]["hours"] > 0
    assert sum(split["utterances"] for split in card["splits"].values()) == expected
    assert len(card["speakers"]) == sizes.num_base_speakers + sizes.num_users
    assert len(card["channels"]) == sizes.num_base_channels + sizes.num_users
    text = (root / "corpus.json").read_text(encoding="utf-8") + (root / "base/train.tsv").read_text(encoding="utf-8")
    assert str(root) not in text and str(root.resolve()) not in text  # no absolute paths


def test_audio_format(corpus, manifests):
    durations = []
    for entries in manifests.values():
        for entry in entries:
            info = sf.info(str(entry.audio_path))
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            durations.append(info.frames / info.samplerate)
    assert 0.5 < min(durations) and max(durations) < 15.0


def test_manifests_load_through_the_dataset(manifests):
    extractor = FeatureExtractor(FeatureConfig())
    dataset = SpeechDataset(manifests["base/train"], extractor)
    features, targets = dataset[0]
    assert features.ndim == 2 and features.shape[1] == 80 and features.shape[0] > 50
    assert targets.dtype == torch.int64 and len(targets) == len(manifests["base/train"][0].label_ids)
    user_dataset = SpeechDataset(manifests["users/user01/enroll"], extractor)
    assert user_dataset[len(user_dataset) - 1][0].shape[1] == 80


def test_every_transcript_is_in_the_vocabulary(corpus, manifests):
    vocab = Vocabulary.from_csv(corpus.vocab_path)
    known = set(vocab.tokens)
    for entries in manifests.values():
        for entry in entries:
            assert set(entry.transcript) <= known
            assert vocab.decode(entry.label_ids) == entry.transcript
            assert not any(ch.isdigit() for ch in entry.transcript)


def test_speaker_column_and_split_sizes(corpus, manifests):
    sizes = PRESETS["tiny"]
    n_train, n_dev, n_test = sizes.split_counts()
    base_speakers = {e.speaker for e in manifests["base/train"]}
    assert len(base_speakers) == sizes.num_base_speakers
    assert len(manifests["base/train"]) == n_train * sizes.num_base_speakers
    assert len(manifests["base/dev"]) == n_dev * sizes.num_base_speakers
    assert len(manifests["base/test"]) == n_test * sizes.num_base_speakers
    for user in corpus.users:
        assert {e.speaker for e in manifests[f"users/{user}/enroll"]} == {user}
        assert len(manifests[f"users/{user}/enroll"]) == sizes.enroll_per_user
        assert len(manifests[f"users/{user}/test"]) == sizes.test_per_user


def test_users_are_disjoint_from_base_in_speaker_and_channel(corpus):
    card = corpus.data
    base_ids = {s for split in ("train", "dev", "test") for s in card["splits"][f"base/{split}"]["speakers"]}
    base_channels = {c for split in ("train", "dev", "test") for c in card["splits"][f"base/{split}"]["channels"]}
    profiles = {s["speaker_id"]: s for s in card["speakers"]}
    channels = {c["channel_id"]: c for c in card["channels"]}
    strip = lambda d, key: {k: v for k, v in d.items() if k not in (key, "role")}  # noqa: E731
    base_variants = {profiles[s]["variant"] for s in base_ids}
    for user in card["users"]:
        for split in ("enroll", "test"):
            entry = card["splits"][f"users/{user['id']}/{split}"]
            assert not set(entry["speakers"]) & base_ids
            assert not set(entry["channels"]) & base_channels
        assert profiles[user["speaker"]]["variant"] not in base_variants
        user_profile = strip(profiles[user["speaker"]], "speaker_id")
        assert all(strip(profiles[s], "speaker_id") != user_profile for s in base_ids)
        user_channel = channels[user["channel"]]
        assert user_channel["kind"] != "base"
        assert all(strip(channels[c], "channel_id") != strip(user_channel, "channel_id") for c in base_channels)
    # no sentence is shared between any two splits
    texts = [
        line.split("\t")[1]
        for path in corpus.root.rglob("*.tsv")
        if path.name != "utterances.tsv"
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert len(texts) == len(set(texts))


def test_favourite_words_are_frequent_for_their_user():
    plan = plan_corpus("tiny", seed=0, enroll_per_user=40, test_per_user=20)
    for user in plan.users:
        words = [w for kind in ("person", "place") for w in user.favourites[kind]]
        texts = [u.text for u in plan.utterances if u.group == f"users/{user.user_id}"]
        hits = sum(any(w in t for w in words) for t in texts)
        assert hits >= 0.3 * len(texts)
    assert len({w for user in plan.users for kind in ("person", "place") for w in user.favourites[kind]}) == (
        2 * plan.sizes.num_users * plan.sizes.favourites_per_kind
    )


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(corpus, tmp_path):
    again = build_corpus(tmp_path / "again", preset="tiny", seed=0, num_workers=1)
    assert _files(again.root) == _files(corpus.root)
    other = build_corpus(tmp_path / "other", preset="tiny", seed=1, num_workers=2)
    original, different = _files(corpus.root), _files(other.root)
    assert original["corpus.json"] != different["corpus.json"]
    assert original["base/train.tsv"] != different["base/train.tsv"]
    assert not {v for k, v in original.items() if k.endswith(".wav")} & {
        v for k, v in different.items() if k.endswith(".wav")
    }


def test_second_build_reuses_the_cache_and_repairs_damage(corpus, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(corpus.root, root)
    wavs = sorted(root.rglob("*.wav"))
    stamps = {path: path.stat().st_mtime_ns for path in wavs}
    build_corpus(root, preset="tiny", seed=0, num_workers=1)
    assert {path: path.stat().st_mtime_ns for path in wavs} == stamps

    damaged = wavs[0]
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-200] + bytes(200))  # same size and header, wrong samples
    build_corpus(root, preset="tiny", seed=0, num_workers=1)
    assert damaged.read_bytes() == original
    assert all(path.stat().st_mtime_ns == stamps[path] for path in wavs[1:])
    assert _files(root) == _files(corpus.root)


def test_ensure_corpus_returns_quickly_when_complete_and_rebuilds_otherwise(corpus, tmp_path):
    root = tmp_path / "ensure"
    shutil.copytree(corpus.root, root)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    card = ensure_corpus(root, preset="tiny", seed=0)
    assert isinstance(card, CorpusCard) and card.data == corpus.data
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == stamps

    (root / "base" / "dev.tsv").unlink()
    ensure_corpus(root, preset="tiny", seed=0, num_workers=1)
    assert (root / "base" / "dev.tsv").read_bytes() == (corpus.root / "base" / "dev.tsv").read_bytes()


def test_ensure_corpus_without_sizes_keeps_the_sizes_the_corpus_was_built_with(corpus, tmp_path, caplog):
    # review: training calls ensure_corpus(dir, preset, seed); it rebuilt a corpus made with size overrides at the
    # preset's sizes ("31 of 38 utterances cached, synthesizing 7"), deleting files
    root = tmp_path / "kept"
    shutil.copytree(corpus.root, root)
    build_corpus(root, preset="tiny", seed=0, num_workers=1, num_users=1)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    with caplog.at_level(logging.INFO):
        card = ensure_corpus(root, preset="tiny", seed=0)
    assert card.users == ["user01"] and card.sizes.num_users == 1
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == stamps
    kept = [record.getMessage() for record in caplog.records if "keeping the sizes" in record.getMessage()]
    assert len(kept) == 1 and "num_users=1 (preset: 2)" in kept[0] and str(root) in kept[0]

    (root / "base" / "dev.tsv").unlink()  # completed as it was built, not rebuilt at the preset's sizes
    assert ensure_corpus(root, preset="tiny", seed=0, num_workers=1).users == ["user01"]
    assert (root / "base" / "dev.tsv").is_file() and not (root / "users" / "user02").exists()

    # explicit sizes that differ from the card's rebuild the corpus at those sizes
    assert ensure_corpus(root, preset="tiny", seed=0, num_workers=1, num_users=2).users == ["user01", "user02"]
    assert _files(root) == _files(corpus.root)


def test_ensure_corpus_refuses_a_folder_holding_a_corpus_of_another_preset_or_seed(corpus, tmp_path):
    """Review, stop 39: ``kospeech-train data.corpus_dir=data/corpus_tiny`` (the demo preset by default) began
    synthesizing the demo corpus into the tiny corpus' folder, and its build would have deleted the tiny files the demo
    plan does not use."""
    root = tmp_path / "other"
    shutil.copytree(corpus.root, root)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    for preset, seed in (("demo", 0), ("tiny", 1)):
        with pytest.raises(ConfigError) as refused:
            ensure_corpus(root, preset=preset, seed=seed, num_workers=1)
        message = str(refused.value)
        assert f"holds the 'tiny' corpus of seed 0, not the {preset!r} corpus of seed {seed}" in message
        assert f"bin/make_corpus.py preset={preset} seed={seed} out_dir={root}" in message
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()} == stamps


def test_smaller_rebuild_removes_stale_files_and_matches_a_fresh_build(corpus, tmp_path):
    root = tmp_path / "shrink"
    shutil.copytree(corpus.root, root)
    build_corpus(root, preset="tiny", seed=0, num_workers=1, num_users=1)
    assert not (root / "users" / "user02").exists()
    fresh = build_corpus(tmp_path / "fresh", preset="tiny", seed=0, num_workers=1, num_users=1)
    assert _files(root) == _files(fresh.root)
    # the base speakers and sentences do not depend on the number of users (label ids do: the vocabulary changes)
    base_audio = {k: v for k, v in _files(root).items() if k.startswith("base/wavs/")}
    assert base_audio == {k: v for k, v in _files(corpus.root).items() if k.startswith("base/wavs/")}


def _add_a_persons_files(root: Path) -> dict:
    """Recordings and a manifest a person put into a built corpus (the layout bin/train_adapters.py documents)."""
    mine = {
        "users/mina/enroll.tsv": b"wavs/0001.wav\t\xea\xb0\x80\t\n",
        "users/mina/wavs/0001.wav": b"RIFF-mina",
        "base/wavs/my_recording.wav": b"RIFF-mine",
        "users/user01/wavs/extra_take.wav": b"RIFF-extra",
    }
    for relative, content in mine.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return mine


@pytest.mark.parametrize("num_users", [None, 1], ids=["same-settings", "fewer-users"])
def test_a_rebuild_deletes_only_files_an_earlier_build_recorded(corpus, tmp_path, num_users):
    root = tmp_path / "owned"
    shutil.copytree(corpus.root, root)
    mine = _add_a_persons_files(root)
    overrides = {} if num_users is None else {"num_users": num_users}
    build_corpus(root, preset="tiny", seed=0, num_workers=1, **overrides)
    assert {relative: (root / relative).read_bytes() for relative in mine} == mine
    if num_users == 1:
        assert not (root / "users" / "user02").exists()


def test_a_recorded_file_changed_since_is_left_in_place_with_a_warning(corpus, tmp_path, caplog):
    root = tmp_path / "edited"
    shutil.copytree(corpus.root, root)
    edited = root / "users" / "user02" / "enroll.tsv"
    edited.write_text(edited.read_text(encoding="utf-8") + "# my note\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        build_corpus(root, preset="tiny", seed=0, num_workers=1, num_users=1)
    assert edited.is_file() and "# my note" in edited.read_text(encoding="utf-8")
    assert "has changed since: left in place" in caplog.text
    assert not (root / "users" / "user02" / "wavs").exists()


def test_bad_presets_and_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus preset"):
        build_corpus(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="unknown corpus size overrides"):
        build_corpus(tmp_path, preset="tiny", num_speakers=3)
    with pytest.raises(ValueError, match="utterances_per_speaker"):
        plan_corpus("tiny", utterances_per_speaker=2)
    # review, stop 37: 10 utterances split 5 dev / 5 test left base/train.tsv empty, without a word
    with pytest.raises(ValueError, match="10 utterances per speaker leave none for training after 5 dev and 5 test"):
        plan_corpus("tiny", utterances_per_speaker=10, dev_fraction=0.49, test_fraction=0.49)
    with pytest.raises(ValueError, match="seed"):
        plan_corpus("tiny", seed=-1)
    with pytest.raises(ValueError, match="num_workers"):
        build_corpus(tmp_path, preset="tiny", num_workers=0)
    assert not any(tmp_path.iterdir())


def test_speakers_are_distinguishable(manifests):
    """Nearest-centroid speaker ID on mean/std MFCCs, leave one out, over the base speakers."""
    extractor = FeatureExtractor(FeatureConfig(feature_type="mfcc", normalize="none"))
    vectors, labels = [], []
    for split in ("train", "dev", "test"):
        for entry in manifests[f"base/{split}"]:
            features = extractor.from_file(entry.audio_path).numpy()
            vectors.append(np.concatenate([features.mean(axis=0), features.std(axis=0)]))
            labels.append(entry.speaker)
    vectors = np.stack(vectors)
    vectors = (vectors - vectors.mean(axis=0)) / (vectors.std(axis=0) + 1e-8)
    labels = np.array(labels)
    speakers = sorted(set(labels))
    correct = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        centroids = np.stack([vectors[keep & (labels == s)].mean(axis=0) for s in speakers])
        predicted = speakers[int(np.argmin(((centroids - vectors[i]) ** 2).sum(axis=1)))]
        correct += predicted == labels[i]
    accuracy = correct / len(labels)
    assert accuracy >= 0.9, accuracy  # chance is 1 / len(speakers)


def test_challenge_users_are_unlike_every_base_speaker_and_user_and_leave_the_plan_alone():
    from kospeech.data.synthetic.profiles import CHALLENGE_CHANNEL_KINDS, SPEAKER_VARIANTS, USER_CHANNEL_KINDS

    plan = plan_corpus("demo", 0)
    users, utterances = plan_challenge(plan)
    assert [user.user_id for user in users] == [f"challenge{index:02d}" for index in range(1, 7)]
    assert {user.channel.kind for user in users} == set(CHALLENGE_CHANNEL_KINDS)
    assert not {user.channel.kind for user in users} & set(USER_CHANNEL_KINDS)
    voices = {user.speaker.variant for user in users}
    assert len(voices) == 6 and not voices & set(SPEAKER_VARIANTS)  # base speakers and users draw from that list
    assert not {u.text for u in utterances} & {u.text for u in plan.utterances}
    assert all(u.group == f"challenge/{u.speaker.speaker_id}" for u in utterances)
    sizes = plan.sizes
    assert len(utterances) == 6 * (sizes.enroll_per_user + sizes.test_per_user)
    assert plan_challenge(plan_corpus("demo", 0)) == (users, utterances)
    # channels without a codec keep their old description (and so the audio hashes of every existing file)
    assert all("codec_kbps" not in channel.to_dict() for channel in plan.base_channels)
    assert sum(user.channel.codec_kbps is not None for user in users) == 2


def test_challenge_sets_are_built_on_request_byte_identical(tmp_path):
    vocab = Vocabulary.build([u.text for u in plan_challenge(plan_corpus("tiny", 0))[1]])
    runs = []
    for name in ("a", "b"):
        manifests = build_user_sets(
            tmp_path / name, vocab, preset="tiny", users=["challenge01", "challenge06"], group="challenge"
        )
        runs.append({path.relative_to(tmp_path / name): path.read_bytes() for path in (tmp_path / name).rglob("*.wav")})
        assert sorted(manifests) == ["challenge01", "challenge06"]
        entries = read_manifest(manifests["challenge06"]["enroll"], vocab)
        assert entries and all(entry.audio_path.is_file() for entry in entries)
    assert runs[0] == runs[1] and len(runs[0]) == 2 * (PRESETS["tiny"].enroll_per_user + PRESETS["tiny"].test_per_user)
    samples, rate = sf.read(next(iter((tmp_path / "a" / "challenge" / "challenge01" / "wavs").glob("*.wav"))))
    assert rate == 16000 and np.abs(samples).max() > 0.01  # speech came through the Opus codec
    with pytest.raises(ValueError, match="unknown user group"):
        build_user_sets(tmp_path / "c", vocab, preset="tiny", group="base")


def test_sealed_users_are_unlike_every_other_group_and_leave_the_plan_and_the_challenge_alone():
    from kospeech.data.synthetic.profiles import (
        CHALLENGE_CHANNEL_KINDS,
        CHALLENGE_VOICES,
        SEALED_CHANNEL_KINDS,
        SEALED_VOICES,
        SPEAKER_VARIANTS,
        USER_CHANNEL_KINDS,
    )

    plan = plan_corpus("demo", 0)
    challenge_users, challenge_utterances = plan_challenge(plan)
    users, utterances = plan_sealed(plan)
    assert [user.user_id for user in users] == [f"sealed{index:02d}" for index in range(1, 7)]
    kinds = {user.channel.kind for user in users}
    assert kinds == set(SEALED_CHANNEL_KINDS)
    assert not kinds & ({"base"} | set(USER_CHANNEL_KINDS) | set(CHALLENGE_CHANNEL_KINDS))
    voices = {user.speaker.variant for user in users}
    assert voices == set(SEALED_VOICES) and len(voices) == 6
    assert not voices & (set(SPEAKER_VARIANTS) | set(CHALLENGE_VOICES))
    texts = [u.text for u in utterances]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & {u.text for u in plan.utterances}
    assert not set(texts) & {u.text for u in challenge_utterances}
    assert all(u.group == f"sealed/{u.speaker.speaker_id}" for u in utterances)
    sizes = plan.sizes
    assert len(utterances) == 6 * (sizes.enroll_per_user + sizes.test_per_user)
    assert plan_sealed(plan_corpus("demo", 0)) == (users, utterances)
    # planning them changes nothing of the corpus or the challenge users, and their channels' new settings stay out of
    # every other channel's description (and so out of the audio hashes of every existing file)
    assert plan_corpus("demo", 0) == plan and plan_challenge(plan) == (challenge_users, challenge_utterances)
    new_settings = {"echo_delay_s", "echo_gain_db", "suppression_db", "packet_loss"}
    others = list(plan.base_channels) + [user.channel for user in plan.users + challenge_users]
    assert all(not new_settings & set(channel.to_dict()) for channel in others)
    assert all(channel.noise_type != "car" for channel in others)


def test_sealed_sets_are_built_on_request(tmp_path):
    vocab = Vocabulary.build([u.text for u in plan_sealed(plan_corpus("tiny", 0))[1]])
    manifests = build_user_sets(tmp_path, vocab, preset="tiny", users=["sealed02", "sealed04"], group="sealed")
    assert sorted(manifests) == ["sealed02", "sealed04"]
    for user in manifests:
        for split in ("enroll", "test"):
            assert manifests[user][split] == tmp_path / "sealed" / user / f"{split}.tsv"
            entries = read_manifest(manifests[user][split], vocab)
            assert entries and all(entry.audio_path.is_file() for entry in entries)
    wavs = sorted((tmp_path / "sealed").rglob("*.wav"))
    assert len(wavs) == 2 * (PRESETS["tiny"].enroll_per_user + PRESETS["tiny"].test_per_user)
    lost = []
    for path in (tmp_path / "sealed" / "sealed04" / "wavs").glob("*.wav"):  # Opus, then lost packets
        samples, rate = sf.read(path, dtype="int16")
        assert rate == 16000 and np.abs(samples).max() > 300
        packets = samples[: len(samples) - len(samples) % 320].reshape(-1, 320)
        lost.append(np.mean(np.all(packets == 0, axis=1)))
    assert 0.0 < np.mean(lost) < 0.2


def test_challenge_and_sealed_users_never_share_favourite_words():
    # review: favourites_per_kind=7 wrapped the pool of 40, so challenge01 and challenge06 shared two favourites
    too_many = plan_corpus("tiny", 0, favourites_per_kind=7, num_users=1)
    for plan_group in (plan_challenge, plan_sealed):
        with pytest.raises(ValueError, match=r"favourites_per_kind=7 .* 6 users x 7 .*favourites_per_kind <= 6"):
            plan_group(too_many)
    for plan_group in (plan_challenge, plan_sealed):
        users, _ = plan_group(plan_corpus("tiny", 0, favourites_per_kind=6, num_users=1))
        words = [word for user in users for kind in ("person", "place") for word in user.favourites[kind]]
        assert len(words) == len(set(words)) == 6 * 2 * 6


def test_a_vocabulary_without_the_groups_syllables_is_refused_before_any_synthesis(tmp_path):
    # review: a character vocabulary of the base sentences synthesized every challenge file, then failed at encoding
    plan = plan_corpus("tiny", 0)
    vocab = Vocabulary.build([u.text for u in plan.utterances if u.group == "base"])
    with pytest.raises(
        UnknownCharacterError,
        match=r"^\d+ of 42 challenge texts hold characters outside the character vocabulary \(\d+ tokens\), "
        r"first missing: \['.*'\]; nothing was synthesized; these groups use syllables outside a character base's "
        r"vocabulary: use a grapheme \(jamo\) vocabulary",
    ):
        build_user_sets(tmp_path / "sets", vocab, preset="tiny", group="challenge")
    assert not (tmp_path / "sets").exists()


def test_user_sets_are_planned_with_the_sizes_of_their_corpus(tmp_path):
    # review: build_user_sets planned plan_corpus(preset, seed), so 8 of the demo users' sentences were base sentences
    # of a demo corpus built with num_base_speakers=12
    sized = plan_corpus("demo", 0, num_base_speakers=12)
    base = {u.text for u in sized.utterances if u.group == "base"}
    preset_enroll = [u for u in plan_corpus("demo", 0).utterances if u.group == "users/user02" and u.split == "enroll"]
    assert preset_enroll[8].text in base
    vocab = Vocabulary.build(u.text for u in sized.utterances)
    manifests = build_user_sets(
        tmp_path, vocab, preset="demo", users=["user02"], max_enroll=9, max_test=1, num_base_speakers=12
    )
    texts = [entry.transcript for entry in read_manifest(manifests["user02"]["enroll"], vocab)]
    assert texts == [u.text for u in sized.utterances if u.group == "users/user02" and u.split == "enroll"][:9]
    assert not set(texts) & base


def test_user_sets_of_a_corpus_folder_follow_its_card_and_refuse_base_sentences(corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(corpus.root, root)
    build_corpus(root, preset="tiny", seed=0, num_workers=1, test_per_user=2)
    challenge = plan_challenge(plan_corpus("tiny", 0, test_per_user=2))[1]
    vocab = Vocabulary.build(u.text for u in challenge)
    sets = tmp_path / "sets"
    manifests = build_user_sets(sets, vocab, corpus=root, users=["challenge01"], max_enroll=1, group="challenge")
    tests = read_manifest(manifests["challenge01"]["test"], vocab)
    assert [entry.transcript for entry in tests] == [
        u.text for u in challenge if u.utt_id.startswith("challenge01-test")
    ]
    assert len(tests) == 2  # the card's test_per_user, not the preset's 3
    with pytest.raises(
        ValueError, match=r"takes preset, seed and sizes from its card; leave out preset='tiny', num_users=1"
    ):
        build_user_sets(sets, vocab, corpus=root, preset="tiny", num_users=1, group="challenge")

    # a base manifest that holds a challenge sentence (a corpus some other code built) is refused before synthesis
    train = root / "base" / "train.tsv"
    first, *rest = train.read_text(encoding="utf-8").splitlines()
    columns = first.split("\t")
    columns[1] = challenge[0].text
    train.write_text("\n".join(["\t".join(columns)] + rest) + "\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"1 challenge sentences are in the base set of the corpus in .*\['challenge01-enroll-0000'\]"
    ):
        build_user_sets(tmp_path / "other", vocab, corpus=root, users=["challenge01"], max_enroll=1, group="challenge")
    assert not (tmp_path / "other").exists()


def test_user_sets_keep_a_checksum_index_and_synthesize_damaged_wavs_again(tmp_path):
    # review: without utterances.tsv a cached wav was reused after a format check only
    vocab = Vocabulary.build(u.text for u in plan_challenge(plan_corpus("tiny", 0))[1])

    def build(max_enroll):
        build_user_sets(
            tmp_path, vocab, preset="tiny", users=["challenge02"], max_enroll=max_enroll, max_test=1, group="challenge"
        )

    build(2)
    folder = tmp_path / "challenge" / "challenge02"
    wavs = sorted((folder / "wavs").glob("*.wav"))
    index = (folder / "utterances.tsv").read_text(encoding="utf-8")
    assert [path.name.split("-")[1:3] for path in wavs] == [["enroll", "0000"], ["enroll", "0001"], ["test", "0000"]]
    assert all(f"challenge/challenge02/wavs/{path.name}" in index for path in wavs)
    originals = {path: path.read_bytes() for path in wavs}
    damaged = wavs[1]
    damaged.write_bytes(originals[damaged][:-200] + bytes(200))  # same size and header, wrong samples
    build(1)  # a smaller run keeps the checksums of the files it leaves alone
    assert (folder / "utterances.tsv").read_text(encoding="utf-8") == index
    build(2)
    assert {path: path.read_bytes() for path in wavs} == originals
