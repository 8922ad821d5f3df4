"""What turning clips into features changed about them (resampling, the channel used of multi-channel
clips, zero padding, cropping), counted per feature file and stored in its metadata. Reading them back needs neither
torch nor safetensors, so reports can show them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import read_safetensors_header

METADATA_KEY = "audio_notes"
N_EXAMPLES = 3


@dataclass
class AudioNotes:
    clips: int = 0
    resampled: int = 0  # not at 16 kHz
    mixed_down: int = 0  # more than one channel, mixed to mono (features.channels = mix)
    multi_channel: int = 0  # more than one channel (whatever features.channels does with them)
    channel: str = "mix"  # features.channels (files written before the setting existed mixed the channels)
    padded: int = 0  # shorter than features.target_frames: zero-padded
    cropped: int = 0  # longer: the end is cut off
    target_frames: int = 0
    shortest_frames: int | None = None  # fbank frames of the shortest clip, before padding
    sample_rates: dict[str, int] = field(default_factory=dict)  # rate of the resampled clips -> count
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> a few file names

    def add(self, path: str | Path, sample_rate: int, channels: int, frames: int) -> None:
        """Count one clip: its sample rate, channels and fbank frames before padding or cropping."""
        from .audio import SAMPLE_RATE

        self.clips += 1
        self.shortest_frames = frames if self.shortest_frames is None else min(self.shortest_frames, frames)
        kinds = []
        if sample_rate != SAMPLE_RATE:
            kinds.append("resampled")
            self.sample_rates[str(sample_rate)] = self.sample_rates.get(str(sample_rate), 0) + 1
        if channels > 1:
            kinds.append("multi_channel")
            if self.channel == "mix":
                kinds.append("mixed_down")
        if frames < self.target_frames:
            kinds.append("padded")
        elif frames > self.target_frames:
            kinds.append("cropped")
        for kind in kinds:
            setattr(self, kind, getattr(self, kind) + 1)
            names = self.examples.setdefault(kind, [])
            if len(names) < N_EXAMPLES:
                names.append(Path(path).name)

    @property
    def notably_padded(self) -> bool:
        """Whether a clip got a whole patch of zeros or more. target_frames is a multiple of the encoder's patch
        (16 frames), so clips a little shorter are padded up to it as a rule (2-s clips: 198 frames to 208);
        more padding means clips shorter than the rest, or than the target was chosen for."""
        return bool(self.padded) and self.target_frames - (self.shortest_frames or 0) >= _patch_frames()

    @property
    def changed(self) -> bool:
        """Whether any clip was resampled, had several channels or was notably padded (cropping long clips,
        and padding up to the next whole patch, are the expected cases)."""
        return bool(self.resampled or self.mixed_down or self.multi_channel or self.notably_padded)

    def channel_use(self) -> str:
        """What happened to the clips with several channels."""
        if self.channel == "mix":
            return "mixed down to mono"
        if self.channel == "each":
            return "each channel embedded as a view of its own (features.channels = each)"
        return f"channel {self.channel} used (features.channels = {self.channel})"

    def summary(self) -> str:
        """One line for the job log."""
        parts = []
        if self.resampled:
            rates = ", ".join(f"{r} Hz: {n}" for r, n in sorted(self.sample_rates.items()))
            parts.append(f"{self.resampled} resampled to 16 kHz (from {rates})")
        if self.multi_channel or self.mixed_down:
            parts.append(f"{self.multi_channel or self.mixed_down} with several channels: {self.channel_use()}")
        if self.padded:
            parts.append(f"{self.padded} zero-padded to {self.target_frames} frames (shortest: {self.shortest_frames})")
        if self.cropped:
            parts.append(f"{self.cropped} cropped to {self.target_frames} frames")
        changes = "; ".join(parts) if parts else "none resampled, multi-channel, padded or cropped"
        examples = "; ".join(f"{k}: {', '.join(v)}" for k, v in self.examples.items() if k != "mixed_down" or not self.multi_channel)
        return f"{self.clips} clips: {changes}" + (f" (e.g. {examples})" if examples else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _patch_frames() -> int:
    """The step of features.target_frames (the encoder's patch length in frames), from the schema."""
    from .config import section_schema

    return int(section_schema("features")["properties"]["target_frames"]["multipleOf"])


def read_audio_notes(feature_path: str | Path) -> AudioNotes | None:
    """The notes stored in a feature file; None for a file written before they were recorded."""
    path = Path(feature_path)
    try:
        header, _ = read_safetensors_header(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable feature file ({err})") from err
    text = (header.get("__metadata__") or {}).get(METADATA_KEY)
    return AudioNotes(**json.loads(text)) if text else None


def changed_summaries(feature_paths) -> list[str]:
    """One line per feature file whose clips the features changed (resampled, mixed down or padded),
    for the terminal and the report."""
    lines = []
    for path in feature_paths:
        notes = read_audio_notes(path)
        if notes is not None and notes.changed:
            lines.append(f"{Path(path).name}: {notes.summary()}")
    return lines
