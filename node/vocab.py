"""Controlled vocabularies (DESIGN.md section 3).

Stored as strings and validated at every boundary. Extending a vocabulary is a
migration plus a change here; removing a value never happens silently.
"""

from __future__ import annotations

from typing import Final

CONDUCT: Final = frozenset(
    {
        "warrantless_entry",
        "warrantless_arrest",
        "wrongful_detention",
        "citizen_detained",
        "excessive_force",
        "firearm_discharge",
        "chemical_agent",
        "vehicle_force",
        "racial_profiling",
        "masked_agent",
        "no_identification",
        "no_body_camera",
        "sensitive_location",
        "courthouse_arrest",
        "retaliation",
        "unlawful_search",
        "property_damage",
        "denial_of_counsel",
        "medical_neglect",
        "threats_intimidation",
        "family_separation",
        "other",
    }
)

LOCATION_KIND: Final = frozenset(
    {
        "residence",
        "street",
        "vehicle",
        "workplace",
        "school",
        "place_of_worship",
        "courthouse",
        "hospital",
        "shelter",
        "transit",
        "detention_facility",
        "protest",
        "other",
    }
)

AGENCY: Final = frozenset(
    {
        "ICE-ERO",
        "ICE-HSI",
        "CBP-OFO",
        "CBP-USBP",
        "CBP-BORTAC",
        "FBI",
        "DEA",
        "ATF",
        "USMS",
        "FPS",
        "DHS-OTHER",
        "NATIONAL-GUARD",
        "OTHER",
        "UNKNOWN",
    }
)

STATUS: Final = frozenset(
    {
        "reported",
        "under_review",
        "substantiated",
        "unsubstantiated",
        "referred_for_prosecution",
        "in_litigation",
        "closed",
    }
)

AGENT_ROLE: Final = frozenset({"primary", "participant", "supervisor", "unknown"})
PERSON_ROLE: Final = frozenset({"victim", "witness", "complainant"})

SOURCE: Final = frozenset(
    {
        "hotline",
        "rapid_response",
        "complaint",
        "body_camera",
        "bystander_media",
        "news",
        "court_filing",
        "investigation",
        "other",
    }
)

SHARING: Final = frozenset({"sealed", "index", "matter", "compact"})
DEFAULT_SHARING: Final = "index"

CUSTODY_KIND: Final = frozenset({"collected", "received", "copied", "viewed", "sent", "exported"})

# US states, DC and territories: the states a node may be initialised for.
STATES: Final = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "DC",
        "PR",
        "GU",
        "VI",
        "AS",
        "MP",
    ]
)
