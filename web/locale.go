package web

import (
	"net/http"
	"strconv"
	"strings"
)

// Two locales: English, and Russian with the seed's labels, chosen from
// the browser's Accept-Language. Every key exists in both (a test checks).
var locales = map[string]map[string]string{
	"en": {
		"skip": "Skip to content", "nav": "Main", "mail": "Mail", "queue": "E-mail Queue", "alerts": "Alerts",
		"admin": "administrator", "sign_out": "Sign out", "sign_in": "Sign in", "address": "Address",
		"password": "Password", "login_title": "Sign in to pochta", "login_hint": "Your mail address and mail password.",
		"login_missing": "Enter your address and password.", "login_failed": "Wrong address or password.",
		"login_cross_site": "This sign-in came from another site and was refused. Sign in on this page.",
		"login_blocked":    "Too many failed sign-ins from your address. Try again after",
		"login_busy":       "Too many sign-ins are being checked right now. Try again in a moment.",
		"queue_title":      "E-mail Queue", "type": "Type", "all_types": "All", "source": "Source", "all_sources": "All sources",
		"source_user": "E-mail users sent", "source_system": "System notifications", "user": "User", "order": "Sort",
		"newest": "Newest first", "oldest": "Oldest first", "apply": "Show", "columns": "Columns", "save_columns": "Save columns",
		"resend": "Resend failed e-mail", "delete": "Delete queue entry", "tag": "Tag entry", "tag_all": "Tag all entries on this page",
		"from": "From", "to": "To", "subject": "Subject", "status": "Status", "empty": "No entries.",
		"status_outbox": "Outbox", "status_held": "Held (daily limit)", "status_sent": "Sent", "status_failed": "Failed",
		"col_bcc": "Bcc", "col_body": "Body", "col_cc": "Cc", "col_date": "Date", "col_error": "Error Message",
		"col_mime_type": "Mime Type", "col_attempts": "Send Attempts", "col_sent": "Sent", "col_sent_on": "Sent On",
		"yes": "Yes", "no": "No", "show": "Show", "hide": "Hide", "next_page": "Next page", "first_page": "First page",
		"confirm_resend": "Resend the tagged entries?", "confirm_delete": "Delete the tagged entries? This cannot be undone.",
		"confirm_title": "Confirm", "confirm": "Confirm", "cancel": "Cancel", "none_tagged": "Tag at least one entry first.",
		"done_resent": "Entries put back into the outbox:", "done_deleted": "Entries deleted:",
		"done_skipped": "Entries skipped (still waiting, nothing to resend):",
		"entry":        "Queue entry", "body": "Body", "body_cut": "Only the beginning of the message is shown.", "back": "Back to the queue",
		"recipients": "Recipients", "queued_at": "Queued at", "next_attempt": "Next attempt", "size": "Size",
		"alerts_title": "Alert Center", "no_alerts": "No alerts.", "mark_read": "Mark all as read", "open_queue": "Show in the queue",
		"alert_undeliverable": "You have undeliverable e-mail", "alert_delayed": "E-mail delayed",
		"alert_user_limit": "Your daily e-mail limit has been reached", "alert_system_limit": "The daily system e-mail limit has been reached",
		"alert_relay_down": "The e-mail server is down", "alert_relay_back": "The e-mail server is back online",
		"alert_relay_settings": "Failed to connect to the SMTP server (settings)",
		"not_delivered":        "Not delivered", "new_mail": "New mail", "important_mail": "Important message", "no_messages": "No messages.", "older": "Older messages",
		"sent_ok": "Sent.", "draft_saved": "Saved to Drafts.", "show_images": "Show remote images", "attachments": "Attachments", "compose": "Compose", "check_mail": "Check mail",
		"pane_below": "Reading pane below", "pane_right": "Reading pane right", "poll_interval": "Check every", "mail_needs_js": "The mail page needs JavaScript; the queue and alert pages work without.",
		"folders": "Folders", "date": "Date", "cc": "Cc", "bcc": "Bcc", "importance": "Importance", "normal": "normal", "high": "high",
		"text": "Text", "send": "Send (Ctrl+Enter)", "save_draft": "Save to Drafts", "close": "Close",
		"mail_title": "Mail", "mail_soon": "The mail page comes with the next version. Your mail client shows your mail meanwhile; the queue page shows what you sent to other domains.",
		"unread": "unread", "one_message": "Showing the entries of the message the alert is about.", "show_all": "Show all",
		"failed_rcpt": "Undeliverable", "attach_files": "Attach files",
	},
	"ru": {
		"skip": "К содержимому", "nav": "Разделы", "mail": "Почта", "queue": "Очередь писем", "alerts": "Оповещения",
		"admin": "администратор", "sign_out": "Выйти", "sign_in": "Войти", "address": "Адрес",
		"password": "Пароль", "login_title": "Вход в pochta", "login_hint": "Ваш почтовый адрес и пароль от почты.",
		"login_missing": "Введите адрес и пароль.", "login_failed": "Неверный адрес или пароль.",
		"login_cross_site": "Вход со стороннего сайта отклонён. Войдите на этой странице.",
		"login_blocked":    "Слишком много неудачных попыток входа с вашего адреса. Повторите после",
		"login_busy":       "Сейчас проверяется слишком много входов. Повторите через минуту.",
		"queue_title":      "Очередь писем", "type": "Тип", "all_types": "Все", "source": "Источник", "all_sources": "Все источники",
		"source_user": "Письма пользователей", "source_system": "Системные уведомления", "user": "Пользователь", "order": "Порядок",
		"newest": "Сначала новые", "oldest": "Сначала старые", "apply": "Показать", "columns": "Колонки", "save_columns": "Сохранить колонки",
		"resend": "Отправить повторно", "delete": "Удалить из очереди", "tag": "Отметить запись", "tag_all": "Отметить все записи на странице",
		"from": "От", "to": "Кому", "subject": "Тема", "status": "Состояние", "empty": "Записей нет.",
		"status_outbox": "Исходящие", "status_held": "Задержано (дневной лимит)", "status_sent": "Отправлено", "status_failed": "Не доставлено",
		"col_bcc": "Скрытая копия", "col_body": "Текст", "col_cc": "Копия", "col_date": "Дата", "col_error": "Сообщение об ошибке",
		"col_mime_type": "Тип MIME", "col_attempts": "Попыток отправки", "col_sent": "Отправлено", "col_sent_on": "Дата отправки",
		"yes": "Да", "no": "Нет", "show": "Показать", "hide": "Скрыть", "next_page": "Следующая страница", "first_page": "Первая страница",
		"confirm_resend": "Отправить отмеченные письма повторно?", "confirm_delete": "Удалить отмеченные записи? Это нельзя отменить.",
		"confirm_title": "Подтверждение", "confirm": "Подтвердить", "cancel": "Отмена", "none_tagged": "Сначала отметьте хотя бы одну запись.",
		"done_resent": "Возвращено в исходящие:", "done_deleted": "Удалено записей:",
		"done_skipped": "Пропущено (ещё ждут отправки):",
		"entry":        "Запись очереди", "body": "Текст", "body_cut": "Показано только начало письма.", "back": "К очереди",
		"recipients": "Получатели", "queued_at": "Поставлено в очередь", "next_attempt": "Следующая попытка", "size": "Размер",
		"alerts_title": "Центр оповещений", "no_alerts": "Оповещений нет.", "mark_read": "Отметить все как прочитанные", "open_queue": "Показать в очереди",
		"alert_undeliverable": "У вас есть недоставленные письма", "alert_delayed": "Доставка письма задерживается",
		"alert_user_limit": "Достигнут ваш дневной лимит писем", "alert_system_limit": "Достигнут дневной лимит писем системы",
		"alert_relay_down": "Почтовый сервер недоступен", "alert_relay_back": "Почтовый сервер снова работает",
		"alert_relay_settings": "Не удалось подключиться к SMTP-серверу (настройки)",
		"not_delivered":        "Не доставлено", "new_mail": "Новое письмо", "important_mail": "Важное письмо", "no_messages": "Писем нет.", "older": "Более старые",
		"sent_ok": "Отправлено.", "draft_saved": "Сохранено в черновиках.", "show_images": "Показать внешние картинки", "attachments": "Вложения", "compose": "Написать", "check_mail": "Проверить почту",
		"pane_below": "Письмо под списком", "pane_right": "Письмо справа", "poll_interval": "Проверять каждые", "mail_needs_js": "Странице почты нужен JavaScript; очередь и оповещения работают без него.",
		"folders": "Папки", "date": "Дата", "cc": "Копия", "bcc": "Скрытая копия", "importance": "Важность", "normal": "обычная", "high": "высокая",
		"text": "Текст", "send": "Отправить (Ctrl+Enter)", "save_draft": "Сохранить в черновики", "close": "Закрыть",
		"mail_title": "Почта", "mail_soon": "Страница почты появится в следующей версии. Пока почту показывает ваш почтовый клиент, а очередь — то, что вы отправили в другие домены.",
		"unread": "непрочитано", "one_message": "Показаны записи письма, о котором оповещение.", "show_all": "Показать все",
		"failed_rcpt": "Не удалось доставить", "attach_files": "Приложить файлы",
	},
}

// language picks "en" or "ru" from Accept-Language by quality (RFC 9110
// 12.5.4); English when neither is asked for.
func language(r *http.Request) string {
	best, bestQ := "en", -1.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		lang, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if _, ok := locales[lang]; ok && q > bestQ {
			best, bestQ = lang, q
		}
	}
	return best
}

func texts(r *http.Request) map[string]string { return locales[language(r)] }
