"""Galleries for stranger tests: the bundled people, and strangers' faces enrolled as people."""

from __future__ import annotations

from pathlib import Path

from facestream.config import Settings
from facestream.recognizer import FaceEngine, embed_photos
from facestream.schemas import Identity

from .crowds import read_image
from .helpers import FACES, IDENTITIES

__all__ = ["CLIPS", "STRANGERS", "people", "stranger_identities"]

STRANGERS = Path(__file__).parent / "data" / "strangers"
CLIPS = sorted(p for p in STRANGERS.iterdir() if p.is_dir())


def stranger_identities(
    engine: FaceEngine, settings: Settings, left_out: Path | None = None
) -> list[Identity]:
    """Every face of the other clips that passes the naming gate, each enrolled as a person
    (named after its clip first)."""
    identities = []
    for folder in CLIPS:
        if folder == left_out:
            continue
        for frame in sorted(folder.glob("*.jpg")):
            _, embeddings, views = engine.embed_views(read_image(frame))
            for index, (embedding, view) in enumerate(zip(embeddings, views, strict=True)):
                if view.iod >= settings.match.quality.min_iod:
                    identities.append(
                        Identity(
                            name=f"{folder.name[:20]}-{frame.stem}-{index}",
                            model=engine.model_id,
                            embeddings=[embedding.tolist()],
                            enrolled_at=0,
                        )
                    )
    return identities


def people(engine: FaceEngine) -> list[Identity]:
    """The bundled labelled people, enrolled from their train/ photos."""
    return [
        embed_photos(engine, name, sorted((FACES / "train" / name).iterdir()), largest_face=True)
        for name in IDENTITIES
    ]
