"""Small readers the unit tests share: the package itself reads these files another way."""

import pandas as pd
import torch

from eat_asd.audio import read_clip
from eat_asd.features import FeatureSettings, clip_notes, feature_blocks


def load_wav(path, channels=0):
    """(waveform, sample_rate) as the feature step reads a clip."""
    clip = read_clip(path, channels)
    return clip.waveform, clip.sample_rate


def compute_features(paths, settings: FeatureSettings, batch_size=32):
    """(rows, target_frames, 128) for the given clips, in memory: what build_feature_file writes."""
    _, problems, _ = clip_notes(paths, settings)
    blocks = list(feature_blocks(paths, settings, batch_size, "fbank", None, problems))
    return torch.cat(blocks) if blocks else torch.empty(0, settings.target_frames, 128)


def read_submission(path):
    """A DCASE submission file: rows filename,value without a header."""
    return pd.read_csv(path, header=None, names=["filename", "value"])
