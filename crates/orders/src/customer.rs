//! Who the DUELL customer of a web order is: a normalised phone number, then a valid e-mail
//! address, else the shared placeholder customer (SPEC §3.2, reference §9 "Customer matching").

use duellsync_woo_model::{Address, Order};

/// Fewest digits a phone number must keep after normalisation to be used for matching (a
/// Norwegian number has 8).
pub const MIN_PHONE_DIGITS: usize = 8;
/// Most digits an international (E.164) number can have; longer strings are not phone numbers.
pub const MAX_PHONE_DIGITS: usize = 15;

/// Name of the shared customer that takes orders with neither a usable phone nor a valid e-mail.
pub const PLACEHOLDER_CUSTOMER_NAME: &str = "Nettbutikk-kunde";

/// Strips what DUELL's own plugin strips from a billing phone (spaces, the Norwegian prefixes
/// `+47`, `0047`, `+0047`, then `+`, `#`, `*`) plus common separators (`-`, `.`, `/`, `(`, `)`).
/// Unlike the plugin's `str_replace`, the country prefixes are removed only at the start, so a
/// number that merely contains `0047` keeps its digits. Returns the digits when at least
/// [`MIN_PHONE_DIGITS`] (and at most [`MAX_PHONE_DIGITS`]) remain and nothing but digits is left.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let mut s: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '#' | '*' | '-' | '.' | '/' | '(' | ')'))
        .collect();
    // Repeated so that the result is a fixed point: normalising a normalised number changes
    // nothing.
    loop {
        let before = s.len();
        for prefix in ["+0047", "+47", "0047"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest.to_owned();
            }
        }
        if let Some(rest) = s.strip_prefix('+') {
            s = rest.to_owned();
        }
        if s.len() == before {
            break;
        }
    }
    let usable = (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit());
    usable.then_some(s)
}

/// The trimmed address when it is a plausible e-mail address: one `@`, a non-empty local part,
/// a domain of dot-separated non-empty labels with at least one dot, no whitespace or control
/// characters, at most 254 characters.
pub fn valid_email(raw: &str) -> Option<String> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 254 {
        return None;
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = s.split_once('@')?;
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return None;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return None;
    }
    Some(s.to_owned())
}

/// How to find (or create) the DUELL customer of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerIdentity {
    /// Normalised billing phone, when usable: looked up first.
    pub phone: Option<String>,
    /// Valid billing e-mail: looked up when the phone is unusable or finds nobody.
    pub email: Option<String>,
}

impl CustomerIdentity {
    /// The order's billing phone and e-mail, normalised.
    pub fn of(billing: &Address) -> Self {
        CustomerIdentity {
            phone: billing.phone.as_deref().and_then(normalize_phone),
            email: billing.email.as_deref().and_then(valid_email),
        }
    }

    /// Neither a usable phone nor a valid e-mail: the order goes to the placeholder customer.
    pub fn is_anonymous(&self) -> bool {
        self.phone.is_none() && self.email.is_none()
    }
}

/// The fields of a customer to create in DUELL (`PUT customer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerDraft {
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub zip: Option<String>,
    pub city: Option<String>,
}

/// The customer to create for `order` when no existing one matched. A customer without a usable
/// phone gets `placeholder_phone`, as DUELL's plugin did; an anonymous order creates the
/// placeholder customer itself (no name, address or e-mail of one buyer on a shared record).
pub fn customer_draft(order: &Order, placeholder_phone: &str) -> CustomerDraft {
    let id = CustomerIdentity::of(&order.billing);
    if id.is_anonymous() {
        return placeholder_draft(placeholder_phone);
    }
    let b = &order.billing;
    let name = [b.first_name.trim(), b.last_name.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let name = if !name.is_empty() {
        name
    } else if !b.company.trim().is_empty() {
        b.company.trim().to_owned()
    } else {
        id.email
            .clone()
            .unwrap_or_else(|| PLACEHOLDER_CUSTOMER_NAME.to_owned())
    };
    let nonempty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    CustomerDraft {
        name,
        phone: Some(id.phone.unwrap_or_else(|| placeholder_phone.to_owned())),
        email: id.email,
        address: nonempty(&street(b)),
        zip: nonempty(&b.postcode),
        city: nonempty(&b.city),
    }
}

/// The shared customer of orders that carry neither a usable phone nor a valid e-mail.
pub fn placeholder_draft(placeholder_phone: &str) -> CustomerDraft {
    CustomerDraft {
        name: PLACEHOLDER_CUSTOMER_NAME.to_owned(),
        phone: Some(placeholder_phone.to_owned()),
        email: None,
        address: None,
        zip: None,
        city: None,
    }
}

/// `address_1` and `address_2` on one line.
pub fn street(a: &Address) -> String {
    [a.address_1.trim(), a.address_2.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn norwegian_prefixes_and_separators_are_stripped() {
        for raw in [
            "91234567",
            "912 34 567",
            "+47 912 34 567",
            "+4791234567",
            "0047 91234567",
            "+0047 912 34 567",
            "912-34-567",
            "*91234567#",
            " +47 (912) 34.567 ",
        ] {
            assert_eq!(normalize_phone(raw).as_deref(), Some("91234567"), "{raw}");
        }
    }

    #[test]
    fn a_number_containing_0047_keeps_its_digits() {
        // DUELL's plugin replaced "0047" anywhere and turned this into "9112".
        assert_eq!(normalize_phone("91004712").as_deref(), Some("91004712"));
    }

    #[test]
    fn short_long_or_lettered_phones_are_unusable() {
        for raw in [
            "",
            "1234567",
            "+47 1234 567",
            "call me",
            "9123456a",
            "1234567890123456",
        ] {
            assert_eq!(normalize_phone(raw), None, "{raw}");
        }
    }

    #[test]
    fn foreign_numbers_keep_their_country_code() {
        assert_eq!(
            normalize_phone("+49 30 000000").as_deref(),
            Some("4930000000")
        );
    }

    #[test]
    fn emails_are_checked_for_shape() {
        assert_eq!(
            valid_email(" ola@example.no ").as_deref(),
            Some("ola@example.no")
        );
        assert!(valid_email("ola.nordmann+web@sub.example.co.uk").is_some());
        for bad in [
            "",
            "ola",
            "ola@",
            "@example.no",
            "ola@example",
            "ola@@example.no",
            "o la@example.no",
            "ola@exa_mple.no",
            "ola@.no",
            "ola@example..no",
        ] {
            assert_eq!(valid_email(bad), None, "{bad}");
        }
    }

    fn order_with(phone: Option<&str>, email: Option<&str>) -> Order {
        serde_json::from_value(serde_json::json!({
            "id": 1,
            "billing": {"first_name": "Kari", "last_name": "Nordmann", "address_1": "Storgata 1",
                        "address_2": "H0101", "postcode": "0155", "city": "Oslo",
                        "phone": phone, "email": email}
        }))
        .unwrap()
    }

    #[test]
    fn a_buyer_without_usable_phone_gets_the_placeholder_phone() {
        let d = customer_draft(
            &order_with(Some("123"), Some("kari@example.no")),
            "99999999",
        );
        assert_eq!(d.name, "Kari Nordmann");
        assert_eq!(d.phone.as_deref(), Some("99999999"));
        assert_eq!(d.email.as_deref(), Some("kari@example.no"));
        assert_eq!(d.address.as_deref(), Some("Storgata 1, H0101"));
    }

    #[test]
    fn an_anonymous_order_goes_to_the_placeholder_customer() {
        let o = order_with(None, Some("not-an-email"));
        assert!(CustomerIdentity::of(&o.billing).is_anonymous());
        assert_eq!(
            customer_draft(&o, "99999999"),
            placeholder_draft("99999999")
        );
    }

    proptest! {
        #[test]
        fn normalising_never_panics_and_yields_only_digits(raw in "\\PC{0,40}") {
            if let Some(n) = normalize_phone(&raw) {
                prop_assert!(n.len() >= MIN_PHONE_DIGITS && n.len() <= MAX_PHONE_DIGITS);
                prop_assert!(n.bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn normalising_is_idempotent(raw in "[0-9+ #*()-]{0,30}") {
            if let Some(n) = normalize_phone(&raw) {
                prop_assert_eq!(normalize_phone(&n), Some(n.clone()));
            }
        }

        #[test]
        fn every_norwegian_spelling_of_a_number_normalises_alike(
            digits in "[2-9][0-9]{7}",
            prefix in prop::sample::select(vec!["", "+47", "0047", "+0047", "+47 ", "0047 ", "+ 47"]),
            spaced in any::<bool>(),
        ) {
            let body = if spaced {
                format!("{} {} {}", &digits[..3], &digits[3..5], &digits[5..])
            } else {
                digits.clone()
            };
            let raw = format!("{prefix}{body}");
            prop_assert_eq!(normalize_phone(&raw), Some(digits));
        }

        #[test]
        fn email_check_never_panics(raw in "\\PC{0,80}") {
            if let Some(e) = valid_email(&raw) {
                prop_assert!(e.contains('@'));
            }
        }
    }
}
