//! Words of the console in Norwegian bokmål (the default, worded like DUELL's own
//! "Integrasjoner → WooCommerce" page) and English, and the settings the pages show: their
//! group, label and help text in both languages.

use duellsync_settings::{Refusal, RefusalCode as Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Nb,
    En,
}

impl Lang {
    pub fn from_cookie(v: Option<&str>) -> Lang {
        match v {
            Some("en") => Lang::En,
            _ => Lang::Nb,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }
}

/// One text in both languages.
pub fn t(lang: Lang, key: &str) -> &'static str {
    let (nb, en) = match key {
        "title" => ("Integrasjoner → WooCommerce", "Integrations → WooCommerce"),
        "login" => ("Logg inn", "Log in"),
        "logout" => ("Logg ut", "Log out"),
        "username" => ("Brukernavn", "User name"),
        "password" => ("Passord", "Password"),
        "password_confirm" => ("Gjenta passordet", "Repeat the password"),
        "wrong_login" => ("Feil brukernavn eller passord.", "Wrong user name or password."),
        "throttled" => ("For mange mislykkede forsøk. Prøv igjen om litt.", "Too many failed attempts. Try again in a while."),
        "connection" => ("Tilkobling", "Connection"),
        "settings" => ("Innstillinger", "Settings"),
        "test" => ("Test integrasjon", "Test integration"),
        "sync" => ("Synkroniser", "Synchronise"),
        "status" => ("Status", "Status"),
        "log" => ("Logg", "Log"),
        "stores" => ("Butikker", "Stores"),
        "save" => ("Lagre", "Save"),
        "saved" => ("Lagret.", "Saved."),
        "unchanged" => ("Ingen endringer.", "Nothing changed."),
        "refused" => ("Ikke lagret:", "Not saved:"),
        "conflict" => ("Noen andre endret butikken samtidig. Last siden på nytt og prøv igjen.", "Someone else changed the store meanwhile. Reload the page and try again."),
        "general" => ("Generelt", "General"),
        "products" => ("Varer", "Products"),
        "orders" => ("Ordre", "Orders"),
        "order_statuses" => ("Ordre statuser", "Order statuses"),
        "advanced" => ("Avansert", "Advanced"),
        "run_test" => ("Test integrasjon", "Test integration"),
        "fix" => ("Løsning", "Fix"),
        "not_checked" => ("Ikke sjekket", "Not checked"),
        "warning" => ("Advarsel", "Warning"),
        "plan" => ("Vis plan (endrer ingenting)", "Show the plan (changes nothing)"),
        "start_sync" => ("Start full synkronisering", "Start the full sync"),
        "attr_warning" => ("Advarsel: produktattributter i WooCommerce blir overskrevet med DUELLs egendefinerte felt.", "Warning: WooCommerce product attributes are overwritten with DUELL's custom fields."),
        "confirm_attr" => ("Jeg forstår at attributtene blir overskrevet", "I understand that the attributes are overwritten"),
        "progress" => ("Fremdrift", "Progress"),
        "done_of" => ("ferdig", "done"),
        "per_sec" => ("per sekund", "per second"),
        "left" => ("igjen", "left"),
        "summary" => ("Sammendrag", "Summary"),
        "creates" => ("Opprettes", "Created"),
        "updates" => ("Oppdateres", "Updated"),
        "hides" => ("Skjules", "Hidden"),
        "unchanged_n" => ("Uendret", "Unchanged"),
        "failures" => ("Feil", "Failures"),
        "failed_only" => ("Bare feil", "Failed only"),
        "sku_or_order" => ("Varenummer eller ordrenummer", "SKU or order number"),
        "from" => ("Fra", "From"),
        "to" => ("Til", "To"),
        "filter" => ("Filtrer", "Filter"),
        "export_csv" => ("Eksporter CSV", "Export CSV"),
        "newer" => ("Nyere", "Newer"),
        "older" => ("Eldre", "Older"),
        "dead_letters" => ("Meldinger som feilet for godt", "Messages that failed for good"),
        "replay" => ("Send på nytt", "Replay"),
        "skip" => ("Hopp over", "Skip"),
        "reason" => ("Begrunnelse", "Reason"),
        "time" => ("Tid", "Time"),
        "kind" => ("Hendelse", "Event"),
        "what" => ("Hva", "What"),
        "why" => ("Hvorfor", "Why"),
        "create_store" => ("Opprett butikk", "Create a store"),
        "store_id" => ("Butikk-ID", "Store id"),
        "shard" => ("Shard", "Shard"),
        "invite" => ("Inviter forhandler", "Invite a retailer"),
        "invite_link" => ("Invitasjonslenke (kan brukes én gang):", "Invitation link (single use):"),
        "accept_invite" => ("Opprett konto", "Create the account"),
        "bad_invite" => ("Invitasjonen er ukjent, brukt eller utløpt.", "The invitation is unknown, used or expired."),
        "taken" => ("Brukernavnet er tatt.", "The user name is taken."),
        "password_short" => ("Passordet må ha minst 12 tegn.", "The password needs at least 12 characters."),
        "password_mismatch" => ("Passordene er ikke like.", "The passwords differ."),
        "username_invalid" => ("Brukernavnet kan bare ha bokstaver, tall og . _ - @.", "The user name may only have letters, digits and . _ - @."),
        "first_run" => ("Første oppstart: opprett operatøren", "First run: create the operator"),
        "health" => ("Helse", "Health"),
        "last_success" => ("Sist vellykket", "Last success"),
        "lag" => ("Etterslep", "Lag"),
        "today" => ("Siste 24 timer", "Last 24 hours"),
        "webhooks" => ("Webhooks", "Webhooks"),
        "never" => ("aldri", "never"),
        "secret_set" => ("satt, endret", "set, changed"),
        "by" => ("av", "by"),
        "secret_unset" => ("ikke satt", "not set"),
        "secret_keep" => ("La feltet stå tomt for å beholde verdien.", "Leave empty to keep the value."),
        "departments" => ("Avdelinger fra DUELL", "Departments from DUELL"),
        "stock_department" => ("Lageravdeling", "Stock department"),
        "order_department" => ("Ordreavdeling", "Order department"),
        "no_departments" => ("Lagre kundenummer og token først; da hentes avdelingene fra DUELL.", "Save the client number and token first; the departments are then read from DUELL."),
        "api_detected" => ("Oppdaget", "Detected"),
        "https_required" => ("Butikkadressen må bruke https (med mindre butikken tillater http).", "The shop address must use https (unless the store allows http)."),
        "no_access" => ("Finnes ikke.", "Not found."),
        "language" => ("English", "Norsk"),
        "history" => ("Endringslogg", "Change history"),
        "account" => ("Konto", "Account"),
        "status_map" => ("Statuskobling", "Status mapping"),
        "status_map_help" => (
            "Hver rad kobler en DUELL-kundeordrestatus (1-11) til WooCommerce-statusen ordren flyttes til når DUELL melder den. Første rad er fullføring (5 = Fullført → completed, som utløser betalingen). Legg til flere, f.eks. 8 (Kansellert) → cancelled. Tøm begge feltene i en rad for å fjerne den.",
            "Each row maps a DUELL customer-order status (1-11) to the WooCommerce status the order is moved to when DUELL reports it. The first row is completion (5 = Fullført → completed, which captures the payment). Add more, e.g. 8 (Kansellert) → cancelled. Empty both fields of a row to remove it.",
        ),
        "status_row" => ("Statuskobling", "Mapping"),
        "duell_status" => ("DUELL-status", "DUELL status"),
        "woo_status" => ("WooCommerce-status", "WooCommerce status"),
        "completed_duell" => ("DUELL-status som betyr fullført", "DUELL status that means completed"),
        "completed_woo" => ("Status ved fullføring", "Status on completion"),
        "on" => ("på", "on"),
        "off" => ("av", "off"),
        _ => ("?", "?"),
    };
    match lang {
        Lang::Nb => nb,
        Lang::En => en,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    General,
    Products,
    Orders,
    OrderStatuses,
    Advanced,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::General,
        Group::Products,
        Group::Orders,
        Group::OrderStatuses,
        Group::Advanced,
    ];

    pub fn title(self, lang: Lang) -> &'static str {
        t(
            lang,
            match self {
                Group::General => "general",
                Group::Products => "products",
                Group::Orders => "orders",
                Group::OrderStatuses => "order_statuses",
                Group::Advanced => "advanced",
            },
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Text,
    /// A comma-separated list of text (`fetch_statuses`).
    TextList,
    /// A comma-separated list of numbers.
    NumberList,
    Number,
    Select(&'static [&'static str]),
}

/// One setting as the Settings page shows it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The settings key (`sync_prices`, `stock.source`).
    pub key: &'static str,
    pub kind: Kind,
    pub group: Group,
    pub nb: (&'static str, &'static str),
    pub en: (&'static str, &'static str),
}

impl Field {
    pub fn label(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Nb => self.nb.0,
            Lang::En => self.en.0,
        }
    }
    pub fn help(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Nb => self.nb.1,
            Lang::En => self.en.1,
        }
    }
    /// The HTML id/name of the field.
    pub fn name(&self) -> String {
        self.key.replace('.', "__")
    }
}

const fn f(
    key: &'static str,
    kind: Kind,
    group: Group,
    nb: (&'static str, &'static str),
    en: (&'static str, &'static str),
) -> Field {
    Field {
        key,
        kind,
        group,
        nb,
        en,
    }
}

use Group::*;
use Kind::*;

/// Every setting of SPEC §4 the Settings page edits, in DUELL's order and wording.
pub const FIELDS: &[Field] = &[
    f("orders_from_date", Text, General,
      ("Fra dato", "Ordre opprettet før denne datoen (ÅÅÅÅ-MM-DD) overføres aldri."),
      ("From date", "Orders created before this date (YYYY-MM-DD) are never transferred.")),
    f("automatic", Bool, General,
      ("Automatisk overføring", "Synkroniserer fortløpende. Av: bare når du trykker «Synkroniser»."),
      ("Automatic transfer", "Synchronises continuously. Off: only when you press “Synchronise”.")),
    f("sync_new_categories", Bool, Products,
      ("Synkroniser nye varegrupper", "Nye varer får DUELLs varegruppe som kategori i WooCommerce (bare når varen opprettes)."),
      ("Synchronise new product groups", "New products get DUELL's product group as WooCommerce category (only when created).")),
    f("sync_prices", Bool, Products,
      ("Synkronisere priser", "Priser og kampanjer fra DUELL. Av: prisene styres i WooCommerce."),
      ("Synchronise prices", "Prices and campaigns from DUELL. Off: prices are kept in WooCommerce.")),
    f("create_products", Bool, Products,
      ("Synkronisere nye varer", "Varer som vises i nettbutikk i DUELL opprettes i WooCommerce."),
      ("Synchronise new products", "Products shown in the web shop in DUELL are created in WooCommerce.")),
    f("sync_stock", Bool, Products,
      ("Synkroniser lager", "Lagerbeholdningen i lageravdelingen, minus det nettordre holder av."),
      ("Synchronise stock", "The stock of the stock department, minus what web orders hold.")),
    f("update_products", Bool, Products,
      ("Synkroniser oppdatering av varer", "Navn og beskrivelse oppdateres når de endres i DUELL."),
      ("Synchronise product updates", "Names and descriptions are updated when they change in DUELL.")),
    f("sync_images", Bool, Products,
      ("Synkroniser varebilder", "Bildet fra DUELL, bare når varen ikke har bilde i WooCommerce."),
      ("Synchronise product images", "DUELL's image, only when the product has none in WooCommerce.")),
    f("sync_orders", Bool, Orders,
      ("Synkroniser ordre", "Nettordre overføres til DUELL, hver ordre én gang."),
      ("Synchronise orders", "Web orders are transferred to DUELL, each exactly once.")),
    f("orders_from_number", Number, Orders,
      ("Synk ordre fra ordrenummer", "Ordre med lavere nummer overføres ikke."),
      ("Sync orders from order number", "Orders with a lower number are not transferred.")),
    f("create_customer_order", Bool, Orders,
      ("Opprett kundeordre", "Nettordre blir kundeordre i DUELL (reserverer lager). Av: salgsordre."),
      ("Create customer order", "Web orders become customer orders in DUELL (reserving stock). Off: sales orders.")),
    f("create_missing_products", Bool, Orders,
      ("Opprett varer", "Ukjente varer i en ordre opprettes i DUELL (varegruppe DIVERSE)."),
      ("Create products", "Unknown products of an order are created in DUELL (group DIVERSE).")),
    f("deduct_stock", Bool, Orders,
      ("Trekk fra lager", "Trekker antallet fra lageravdelingen med en gang. Krever 'Opprett kundeordre' deaktivert."),
      ("Deduct from stock", "Subtracts the quantity from the stock department at once. Requires 'Create customer order' off.")),
    f("fetch_statuses", TextList, OrderStatuses,
      ("Hent ordre med status", "WooCommerce-statuser som overføres, adskilt med komma (vanligvis processing)."),
      ("Fetch orders with status", "WooCommerce statuses that are transferred, comma-separated (usually processing).")),
    f("status_after_import", Text, OrderStatuses,
      ("Status etter import", "WooCommerce-status ordren får når den er i DUELL (tom: uendret)."),
      ("Status after import", "WooCommerce status the order gets once it is in DUELL (empty: unchanged).")),
    f("new_product_status", Select(&["publish", "draft", "pending", "private"]), Advanced,
      ("Status for nye varer", "Status nye varer får i WooCommerce."),
      ("Status of new products", "Status new products get in WooCommerce.")),
    f("hidden_product_action", Select(&["draft", "private", "trash"]), Advanced,
      ("Skjulte varer", "Hva som skjer i WooCommerce med en vare som ikke lenger vises i nettbutikk."),
      ("Hidden products", "What happens in WooCommerce to a product no longer shown in the web shop.")),
    f("sync_attributes", Bool, Advanced,
      ("Synkroniser attributter", "DUELLs egendefinerte felt blir produktattributter (full synkronisering overskriver dem)."),
      ("Synchronise attributes", "DUELL's custom fields become product attributes (a full sync overwrites them).")),
    f("reconcile_interval", Text, Advanced,
      ("Avstemming hvert", "Hvor ofte avvik rettes og webhooks sjekkes (f.eks. 40m)."),
      ("Reconcile every", "How often drift is corrected and webhooks are checked (e.g. 40m).")),
    f("poll_interval", Text, Advanced,
      ("Ordrespørring hvert", "Hvor ofte ordre og statuser spørres etter (f.eks. 30s)."),
      ("Order poll every", "How often orders and statuses are polled (e.g. 30s).")),
    f("stock_poll_interval", Text, Advanced,
      ("Lagerspørring hvert", "Hvor ofte lageret leses (f.eks. 30s)."),
      ("Stock poll every", "How often the stock is read (e.g. 30s).")),
    f("stock.source", Select(&["stock", "actual_stock"]), Advanced,
      ("Lagerfelt", "Hvilket lagerfelt i DUELL som publiseres."),
      ("Stock field", "Which DUELL stock field is published.")),
    f("stock.subtract_undrawn_customer_orders", Bool, Advanced,
      ("Trekk fra ikke-plukkede kundeordre", "Trekk fra importerte kundeordre DUELL ikke har trukket ennå."),
      ("Subtract undrawn customer orders", "Subtract imported customer orders DUELL has not drawn yet.")),
    f("stock.drawn_statuses", NumberList, Advanced,
      ("Statuser der lageret er trukket", "DUELL-statuser der lageret er trukket (3,4,5,6,7,11)."),
      ("Statuses with stock drawn", "DUELL statuses at which the stock is drawn (3,4,5,6,7,11).")),
    f("stock.cancelled_statuses", NumberList, Advanced,
      ("Kansellerte statuser", "DUELL-statuser som kansellerer en kundeordre (8)."),
      ("Cancelled statuses", "DUELL statuses that cancel a customer order (8).")),
    f("orders.initial_status", Number, Advanced,
      ("Startstatus for kundeordre", "DUELL-status nye kundeordre får (1 = Behandles)."),
      ("Initial customer-order status", "DUELL status new customer orders get (1 = Behandles).")),
    f("orders.placeholder_phone", Text, Advanced,
      ("Telefon for anonym kunde", "Kunden ordre uten telefon og e-post legges på."),
      ("Placeholder customer phone", "The customer orders without phone and e-mail go to.")),
    f("orders.shipping_product_number", Text, Advanced,
      ("Varenummer for frakt", "DUELL-vare fraktlinjer blir."),
      ("Shipping product number", "DUELL product that shipping lines become.")),
    f("orders.fee_product_number", Text, Advanced,
      ("Varenummer for gebyr", "DUELL-vare gebyrlinjer blir."),
      ("Fee product number", "DUELL product that fee lines become.")),
    f("orders.missing_product_category", Text, Advanced,
      ("Varegruppe for nye varer fra ordre", "Varegruppen varer opprettet fra ordre får."),
      ("Group of products created from orders", "The product group of products created from orders.")),
    f("orders.total_tolerance", Text, Advanced,
      ("Avrundingstoleranse", "Største avvik i ordretotal som godtas som avrunding (0.05)."),
      ("Rounding tolerance", "Largest order-total difference accepted as rounding (0.05).")),
    f("woo.max_concurrency", Number, Advanced,
      ("Samtidige kall til butikken", "Forespørsler samtidig mot WooCommerce (1-32)."),
      ("Concurrent shop requests", "Requests at once to WooCommerce (1-32).")),
    f("woo.webhook_delivery_url", Text, Advanced,
      ("Webhook-adresse", "Offentlig adresse WooCommerce sender ordre til; tom: bare spørring."),
      ("Webhook address", "Public address WooCommerce delivers orders to; empty: polling only.")),
    f("duell.url", Text, Advanced,
      ("DUELL API-adresse", "Standard: https://api.kasseservice.no/v1/"),
      ("DUELL API address", "Default: https://api.kasseservice.no/v1/")),
    f("duell.order_lookup", Bool, Advanced,
      ("Ordreoppslag i DUELL", "Avklar ukjente importutfall med et udokumentert oppslag (se dokumentasjonen)."),
      ("Order lookup in DUELL", "Settle unknown import outcomes with an undocumented lookup (see the docs).")),
];

/// The defaults of boolean settings (SPEC §4), for the form when a key is not written.
pub fn bool_default(key: &str) -> bool {
    !matches!(
        key,
        "deduct_stock" | "create_missing_products" | "duell.order_lookup"
    )
}

/// The label of a settings key, for refusals.
pub fn label_of(lang: Lang, key: &str) -> Option<&'static str> {
    FIELDS.iter().find(|f| f.key == key).map(|f| f.label(lang))
}

/// The label of a settings key that is not on the Settings page (connection, identity).
fn other_label(lang: Lang, key: &str) -> Option<&'static str> {
    let (nb, en) = match key {
        "id" => ("Butikk-ID", "Store id"),
        "shard" => ("Shard", "Shard"),
        "time_zone" => ("Tidssone", "Time zone"),
        "woo.url" => ("Butikkadresse", "Shop address"),
        "woo.api_version" => ("API-versjon", "API version"),
        "woo.auth" => ("Autentisering", "Authentication"),
        "woo.consumer_key" => ("Consumer key", "Consumer key"),
        "woo.consumer_secret" => ("Consumer secret", "Consumer secret"),
        "woo.webhook_secret" => ("Webhook-hemmelighet", "Webhook secret"),
        "woo.previous_webhook_secret" => ("Forrige webhook-hemmelighet", "Previous webhook secret"),
        "woo.request_timeout" => ("Tidsavbrudd mot butikken", "Shop request timeout"),
        "duell.client_number" => ("Kundenummer", "Client number"),
        "duell.client_token" => ("Token", "Token"),
        "duell.stock_department" => ("Lageravdeling", "Stock department"),
        "duell.order_department" => ("Ordreavdeling", "Order department"),
        "duell.notice_secret" => ("Varslingshemmelighet", "Notice secret"),
        "status_map" => ("Statuskobling", "Status mapping"),
        "tax_classes" => ("Avgiftsklasser", "Tax classes"),
        _ => return None,
    };
    Some(match lang {
        Lang::Nb => nb,
        Lang::En => en,
    })
}

/// The label of any settings key a refusal can name; the key itself when it has none.
pub fn key_label(lang: Lang, key: &str) -> String {
    label_of(lang, key)
        .or_else(|| other_label(lang, key))
        .map(str::to_owned)
        .unwrap_or_else(|| key.to_owned())
}

/// A value as a reader sees it: `true`/`false` as on/off in the page's language.
pub fn shown_value(lang: Lang, value: &str) -> String {
    match value {
        "true" => t(lang, "on").to_owned(),
        "false" => t(lang, "off").to_owned(),
        v => v.to_owned(),
    }
}

/// What is wrong and how to fix it, in the page's language, from a refusal of
/// `duellsync-settings` (which owns the rules; this only words them).
pub fn refusal_text(lang: Lang, r: &Refusal) -> String {
    let v = &r.value;
    let min = r.min.as_deref().unwrap_or("");
    let max = r.max.as_deref().unwrap_or("");
    match lang {
        Lang::Nb => match r.code {
            Code::StoreId => format!("«{v}» er ikke en gyldig butikk-ID. Bruk 1-32 små bokstaver, sifre, «-» eller «_»."),
            Code::OutOfRange => match (r.min.is_some(), r.max.is_some()) {
                (true, true) => format!("«{v}» er utenfor det tillatte. Bruk fra {min} til {max}."),
                (true, false) => format!("«{v}» er for lite. Bruk minst {min}."),
                _ => format!("«{v}» er for stort. Bruk høyst {max}."),
            },
            Code::TimeZone => format!("«{v}» er ikke en tidssone. Skriv sonen DUELLs datoer er i, f.eks. «Europe/Oslo»."),
            Code::BasicOverHttp => "«basic» over http avvises av WooCommerce. Bruk «auto» eller «oauth1».".into(),
            Code::PlainHttp => format!("«{v}» bruker http uten kryptering, så API-nøklene ville gått i klartekst. Bruk butikkens https-adresse (eller tillat http for en testbutikk)."),
            Code::NotAUrl => format!("«{v}» er ikke en gyldig adresse. Skriv hele adressen, f.eks. «https://butikk.no»."),
            Code::Secret => format!("Kan ikke leses ({}). Skriv verdien på nytt.", r.message),
            Code::SecretCharacters => "Bruk bare bokstaver, sifre, «-» og «_»: WooCommerce ødelegger signaturen med «&» og lignende.".into(),
            Code::Shard => format!("«{v}» er ikke et gyldig shardnavn. Bruk 1-32 små bokstaver, sifre, «-» eller «_», eller la feltet stå tomt."),
            Code::ClientNumber => format!("«{v}» er ikke DUELLs sekssifrede kundenummer. Kopier det fra DUELL (API-oppsett)."),
            Code::TokenTooShort => "For kort til å være et DUELL-token (de har over 30 tegn). Kopier hele tokenet.".into(),
            Code::DeductStockWithCustomerOrder => "«Trekk fra lager» krever at «Opprett kundeordre» er deaktivert (ellers trekkes lageret to ganger). Slå av «Opprett kundeordre» eller «Trekk fra lager».".into(),
            Code::NotADate => format!("«{v}» er ikke en dato. Skriv f.eks. «2026-01-31»."),
            Code::Empty => "Listen er tom, så ingen ordre ville blitt hentet. Skriv minst én status, vanligvis «processing».".into(),
            Code::NotAWooStatus => format!("«{v}» er ikke en WooCommerce-ordrestatus. Bruk f.eks. «processing», «on-hold» eller «completed»."),
            Code::NotADuellStatus => format!("«{v}» er ikke en DUELL-kundeordrestatus. Bruk et tall fra {} til {} (5 = Fullført).", or(min, "1"), or(max, "11")),
            Code::Duplicate => format!("DUELL-status «{v}» står i flere rader. Behold én rad for hver status."),
            Code::NotADecimal => format!("«{v}» er ikke et tall. Skriv f.eks. «0.05»."),
            Code::NotADuration => format!("«{v}» er ikke en varighet. Skriv f.eks. «30s», «40m», «500ms» eller «2h»."),
            Code::NotAnInteger => format!("«{v}» er ikke et heltall. Skriv f.eks. «5»."),
            Code::Format => format!("«{v}» kan ikke brukes her ({}).", r.message),
        },
        Lang::En => match r.code {
            Code::StoreId => format!("“{v}” is not a valid store id. Use 1-32 lowercase letters, digits, “-” or “_”."),
            Code::OutOfRange => match (r.min.is_some(), r.max.is_some()) {
                (true, true) => format!("“{v}” is out of range. Use {min} to {max}."),
                (true, false) => format!("“{v}” is too small. Use at least {min}."),
                _ => format!("“{v}” is too large. Use at most {max}."),
            },
            Code::DeductStockWithCustomerOrder => "“Deduct from stock” requires “Create customer order” off (otherwise the stock is taken twice). Turn off “Create customer order” or “Deduct from stock”.".into(),
            Code::NotADuellStatus => format!("“{v}” is not a DUELL customer-order status. Use a number from {} to {} (5 = Fullført).", or(min, "1"), or(max, "11")),
            Code::Duplicate => format!("DUELL status “{v}” is in more than one row. Keep one row per status."),
            Code::NotADuration => format!("“{v}” is not a duration. Write e.g. “30s”, “40m”, “500ms” or “2h”."),
            Code::NotAnInteger => format!("“{v}” is not a whole number. Write e.g. “5”."),
            // The library's own wording is English already, and names the fix.
            _ => r.message.clone(),
        },
    }
}

fn or<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() {
        default
    } else {
        s
    }
}
