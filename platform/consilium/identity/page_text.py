"""The texts of the login pages and of the demo identity provider's pages, in each interface
language (see :mod:`consilium.i18n`)."""

from __future__ import annotations

from starlette.requests import Request

from consilium.i18n import LANG_COOKIE, Table, check_table, negotiate, text

TEXTS: Table = {
    "ru": {
        "login.title": "Вход в Consilium",
        "login.choose": "Выберите вход вашего учреждения:",
        "login.none": "Поставщик удостоверений не настроен.",
        "failed.title": "Вход не выполнен",
        "failed.again": "Попробовать снова",
        "failed.unknown_provider": "Неизвестный поставщик удостоверений.",
        "failed.rate_limited": "Слишком много попыток входа; подождите минуту.",
        "failed.unreachable": "Поставщик удостоверений недоступен.",
        "failed.unreachable_later": "Поставщик удостоверений недоступен; попробуйте позже.",
        "failed.not_completed": "Вход не удалось завершить ({reason}).",
        "failed.refused": "Вход отклонён: {reason}.",
        "failed.invalid_tokens": "недействительные токены",
        "devidp.title": "Демонстрационный поставщик удостоверений",
        "devidp.heading": "Демонстрационный поставщик удостоверений Consilium",
        "devidp.note": "Только для демонстрационной установки. Пароль каждого демо-врача: ",
        "devidp.user": "Имя пользователя",
        "devidp.password": "Пароль",
        "devidp.sign_in": "Войти",
        "devidp.col_user": "пользователь",
        "devidp.col_name": "имя",
        "devidp.col_institution": "учреждение",
        "devidp.col_roles": "роли",
        "devidp.wrong": "Неизвестный пользователь или неверный пароль.",
        "devidp.invalid": "Неверный запрос",
        "devidp.signed_out": "Вы вышли из демонстрационного поставщика удостоверений.",
        "role.referring": "направляющий врач",
        "role.consultant": "консультант",
        "role.head": "заведующий",
        "role.admin": "администратор",
    },
    "en": {
        "login.title": "Log in to Consilium",
        "login.choose": "Choose your institution's login:",
        "login.none": "No identity provider is configured.",
        "failed.title": "Login failed",
        "failed.again": "Try again",
        "failed.unknown_provider": "Unknown identity provider.",
        "failed.rate_limited": "Too many login attempts; wait a minute.",
        "failed.unreachable": "The identity provider cannot be reached.",
        "failed.unreachable_later": "The identity provider cannot be reached; try again later.",
        "failed.not_completed": "The login could not be completed ({reason}).",
        "failed.refused": "The login was refused: {reason}.",
        "failed.invalid_tokens": "invalid tokens",
        "devidp.title": "Demo identity provider",
        "devidp.heading": "Consilium demo identity provider",
        "devidp.note": "For the embedded demo only. Every demo clinician's password is ",
        "devidp.user": "User name",
        "devidp.password": "Password",
        "devidp.sign_in": "Sign in",
        "devidp.col_user": "user",
        "devidp.col_name": "name",
        "devidp.col_institution": "institution",
        "devidp.col_roles": "roles",
        "devidp.wrong": "Unknown user or wrong password.",
        "devidp.invalid": "Invalid request",
        "devidp.signed_out": "Signed out of the demo identity provider.",
        "role.referring": "referring doctor",
        "role.consultant": "consultant",
        "role.head": "head of department",
        "role.admin": "administrator",
    },
}
check_table(TEXTS)

# the look of the server's pages, close to the web interface's (dark, system font)
PAGE_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;background:#111417;color:#d8dee4;"
    "max-width:46rem;margin:2rem auto;padding:0 1rem}a{color:#3fa7ff}"
    "td,th{padding:.2rem .6rem;text-align:left;border-bottom:1px solid #2e363f}"
    "input,button{font:inherit;color:inherit;background:#222930;border:1px solid #2e363f;"
    "border-radius:4px;padding:4px 8px}.error{color:#ff8080}</style>"
)


def page_language(request: Request, default: str) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"),
                     default)


def page_text(lang: str, key: str, **values: object) -> str:
    return text(TEXTS, lang, key, **values)
