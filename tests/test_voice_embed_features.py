"""What the speech-embedding trainer shows its head, and the one model ``--members`` writes.

A command is said with a pause after it; the same word running straight on into more speech ("I do
not know where") is other speech. The trainer makes both kinds of window from one clip, and these
tests pin down where each part of the audio lands. ``--members N`` must write one model whose
scores are exactly those of its N heads averaged (their logits' mean), so what the leave-one-
engine-out run measured is what the agent runs.
"""

from __future__ import annotations

import numpy as np

from edge_agent.convert.voice import embed_data
from edge_agent.voice.embedding import SAMPLE_RATE_HZ, EmbeddingSpec

SPEC = EmbeddingSpec()


def loud_samples(x: np.ndarray, level: float) -> np.ndarray:
    return np.flatnonzero(np.abs(x) > level)


def word(at_s: float, length_s: float, amplitude: float) -> np.ndarray:
    """A 1 s clip with one 'word' (a constant level) starting at ``at_s``."""
    x = np.zeros(SAMPLE_RATE_HZ, np.float32)
    a = int(at_s * SAMPLE_RATE_HZ)
    x[a: a + int(length_s * SAMPLE_RATE_HZ)] = amplitude
    return x


def test_a_command_running_on_into_speech_ends_the_window_inside_the_next_word() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        window = embed_data.followed_window(word(0.3, 0.4, 0.5), word(0.2, 0.6, 0.2), SPEC, rng)
        assert len(window) == embed_data.window_samples(SPEC)
        command = loud_samples(window, 0.4)
        follower = np.flatnonzero((np.abs(window) > 0.1) & (np.abs(window) < 0.4))
        gap_s = (follower.min() - command.max()) / SAMPLE_RATE_HZ
        seen_s = (len(window) - follower.min()) / SAMPLE_RATE_HZ
        assert 0 <= gap_s <= embed_data.FOLLOW_GAP_S[1] + 0.01  # straight on, no pause
        assert embed_data.FOLLOW_SEEN_S[0] - 0.01 <= seen_s <= embed_data.FOLLOW_SEEN_S[1] + 0.01


def test_a_word_said_before_a_command_ends_before_it_starts() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        trimmed_command = np.full(int(0.4 * SAMPLE_RATE_HZ), 0.5, np.float32)  # clips as the engines trim them
        trimmed_lead = np.full(int(0.7 * SAMPLE_RATE_HZ), 0.2, np.float32)
        window = embed_data.place_in_window(trimmed_command, SPEC, rng, lead=trimmed_lead)
        command = loud_samples(window, 0.4)
        lead = np.flatnonzero((np.abs(window) > 0.1) & (np.abs(window) < 0.4))
        assert len(command) == int(0.4 * SAMPLE_RATE_HZ)  # the whole command is in the window
        if len(lead):
            gap_s = (command.min() - lead.max()) / SAMPLE_RATE_HZ
            assert embed_data.LEAD_GAP_S[0] - 0.01 <= gap_s <= embed_data.LEAD_GAP_S[1] + 0.01


def test_members_are_one_model_that_averages_their_logits() -> None:
    from edge_agent.convert import _tf
    from edge_agent.convert.voice import embed_train

    keras = _tf.keras()
    members = []
    for k in range(3):
        keras.utils.set_random_seed(k)
        m = embed_train.build_head(keras, SPEC.shape, 7, 8, "mlp")
        for layer in m.layers:  # BatchNorm statistics of a trained head, not the identity
            if layer.__class__.__name__ == "BatchNormalization":
                g, b, mean, var = layer.get_weights()
                layer.set_weights([g * (1.5 + k), b + 0.1 * k, mean + 0.2, var * 2])
        members.append(m)
    joined = embed_train.join_members(keras, members, SPEC.shape, 7)
    x = np.random.default_rng(2).normal(size=(6, *SPEC.shape, 1)).astype(np.float32)
    logp = np.mean([np.log(m.predict(x, verbose=0)) for m in members], axis=0)
    want = np.exp(logp - logp.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = joined.predict(x, verbose=0)
    assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, members[0].predict(x, verbose=0), atol=1e-3)  # not just the first head
    assert len(joined.layers[-1].get_weights()[0]) == 3 * 16  # one last layer over every member's features
