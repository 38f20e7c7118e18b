"""The words of the conclusion PDF in each interface language, and how it writes instants and
dates: in the configured language and regional time zone (``ui.default_language``,
``ui.time_zone``). A PDF is an archived document that every reader sees the same, so it is
written once in the installation's language, not in each reader's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from consilium.i18n import Table, check_table, text

TEXTS: Table = {
    "ru": {
        "title": "Консультативное заключение",
        "doc_title": "Консультативное заключение, случай {case}, версия {version}",
        "case_line": "Случай {case} · версия {version} · подписано {when}",
        "from": "От: {institution} ({person})",
        "to": "Кому: {institution}",
        "patient": "Пациент",
        "patient_line": "{name} · ID {patient_id} · дата рождения {born} · пол {sex}",
        "studies": "Исследования",
        "study_line": "{date} · {modalities} · {description} · номер направления {accession}",
        "question": "Вопрос",
        "clinical_info": "Клинические сведения",
        "findings": "Описание",
        "impression": "Заключение",
        "recommendations": "Рекомендации",
        "amendment": "Исправление",
        "amendment_line": "заменяет версию {version}: {reason}",
        "signed_by": "Подписал(а)",
        "sha256": "SHA-256 содержания: {sha}",
        "key_images": "Ключевые изображения",
        "key_image_line": "Серия {series} {description} · изображение {number}{frame}",
        "key_image_frame": ", кадр {frame}",
        "sex.M": "М",
        "sex.F": "Ж",
        "sex.O": "другой",
    },
    "en": {
        "title": "Consult conclusion",
        "doc_title": "Consult conclusion, case {case}, version {version}",
        "case_line": "Case {case} · version {version} · signed {when}",
        "from": "From: {institution} ({person})",
        "to": "To: {institution}",
        "patient": "Patient",
        "patient_line": "{name} · ID {patient_id} · born {born} · sex {sex}",
        "studies": "Studies",
        "study_line": "{date} · {modalities} · {description} · accession {accession}",
        "question": "Question",
        "clinical_info": "Clinical information",
        "findings": "Findings",
        "impression": "Impression",
        "recommendations": "Recommendations",
        "amendment": "Amendment",
        "amendment_line": "replaces version {version}: {reason}",
        "signed_by": "Signed by",
        "sha256": "Content SHA-256: {sha}",
        "key_images": "Key images",
        "key_image_line": "Series {series} {description} · image {number}{frame}",
        "key_image_frame": ", frame {frame}",
        "sex.M": "M",
        "sex.F": "F",
        "sex.O": "other",
    },
}
check_table(TEXTS)


@dataclass(frozen=True)
class PdfText:
    """The language and time zone a conclusion PDF is written in."""

    language: str = "ru"
    time_zone: str = "Asia/Yekaterinburg"

    def __call__(self, key: str, **values: object) -> str:
        return text(TEXTS, self.language, key, **values)

    def instant(self, value: datetime) -> str:
        """28.11.2026 09:15:30 UTC+05:00 (ru) or 2026-11-28 09:15:30 UTC+05:00 (en)."""
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        local = aware.astimezone(ZoneInfo(self.time_zone))
        offset = local.strftime("%z")
        zone = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        pattern = "%d.%m.%Y %H:%M:%S" if self.language == "ru" else "%Y-%m-%d %H:%M:%S"
        return f"{local.strftime(pattern)} {zone}"

    def date(self, da: str) -> str:
        """A DICOM date (20261203) as a date; anything else as it is."""
        if len(da) == 8 and da.isdigit():
            return f"{da[6:8]}.{da[4:6]}.{da[:4]}" if self.language == "ru" else \
                f"{da[:4]}-{da[4:6]}-{da[6:8]}"
        return da

    def sex(self, code: str) -> str:
        key = f"sex.{code.strip().upper()}"
        return self(key) if key in TEXTS[self.language] else (code or "-")
