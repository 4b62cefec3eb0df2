"""Where an image sits in patient > study > series: plain data shared by the browser and overlay."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImageContext:
    """Where an image sits in patient > study > series, as engine.io describes it."""

    # Identifiers stay out of repr: it ends up in logs and test failure output.
    patient_name: str = field(default="", repr=False)
    patient_id: str = field(default="", repr=False)
    birth_date: str = field(default="", repr=False)
    sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = ""

    @property
    def patient_key(self) -> tuple[str, str]:
        return (self.patient_id, self.patient_name)
