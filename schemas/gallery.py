"""Gallery entries: one enrolled identity and its embeddings, tagged with the model."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["IDENTITY_NAME_PATTERN", "GalleryExport", "Identity"]

IDENTITY_NAME_PATTERN = r"^[A-Za-z0-9_.' -]{1,64}$"


class Identity(BaseModel):
    """An enrolled person: name, one embedding per photo, the model that made them, negatives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=IDENTITY_NAME_PATTERN)]
    model: str
    embeddings: list[list[float]] = Field(min_length=1)
    photos: list[str] = Field(default_factory=list, description="Photo file names, for audit.")
    enrolled_at: int = Field(description="Epoch milliseconds.")
    negatives: list[list[float]] = Field(
        default_factory=list,
        description="Embeddings of faces that are NOT this person (`gallery reject`): a face "
        "closer to one of them than to this identity is never given its name.",
    )
    negative_photos: list[str] = Field(
        default_factory=list, description="Photo file names of the negatives, for audit."
    )

    def dumps(self) -> bytes:
        return orjson.dumps(self.model_dump())

    @classmethod
    def loads(cls, raw: bytes) -> Identity:
        return cls.model_validate_json(raw)


class GalleryExport(BaseModel):
    """A whole gallery as a portable JSON document (`gallery export` / `gallery import`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["facestream-gallery"] = "facestream-gallery"
    version: Literal[1] = 1
    model: str = Field(description="Model id every identity was enrolled with.")
    exported_at: int = Field(description="Epoch milliseconds.")
    identities: list[Identity]
