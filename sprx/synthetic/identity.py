"""Synthetic identities: NHS numbers from the never-issued test range, names, dates of birth.

Every NHS number is in 999 000 0000 - 999 999 9999 and passes Modulus 11, so none can belong to
a real person. That range holds 909,091 valid numbers; past that, people get no NHS number (as
temporary residents do) and link by name and date of birth. Names are all encodable in
Windows-1252, the encoding SystmOne sends.
"""

from __future__ import annotations

import numpy as np

TEST_RANGE_PREFIX = 999_000_000  # first nine digits of the lowest test-range number
TEST_RANGE_SIZE = 1_000_000  # nine-digit prefixes in the test range
# A multiplier coprime to 10**6 walks every prefix exactly once in a scrambled order.
_STRIDE = 7_919


def nhs_check_digit(nine_digits: str) -> int | None:
    """Modulus 11 check digit for the first nine digits, or None when no valid number exists."""
    total = sum(int(digit) * weight for digit, weight in zip(nine_digits, range(10, 1, -1)))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(number: str) -> bool:
    """True when ten digits pass Modulus 11."""
    return len(number) == 10 and number.isdigit() and nhs_check_digit(number[:9]) == int(number[9])


class NhsNumbers:
    """Hands out distinct valid test-range NHS numbers in a seeded, scrambled order."""

    def __init__(self, seed: int) -> None:
        self._offset = seed % TEST_RANGE_SIZE
        self._next = 0

    def take(self) -> str | None:
        """The next unused number, or None once the test range is exhausted."""
        while self._next < TEST_RANGE_SIZE:
            prefix = (self._offset + self._next * _STRIDE) % TEST_RANGE_SIZE
            self._next += 1
            nine = str(TEST_RANGE_PREFIX + prefix)
            check = nhs_check_digit(nine)
            if check is not None:
                return nine + str(check)
        return None


def corrupt_check_digit(number: str) -> str:
    """The same number with a wrong check digit (a realistic transcription fault)."""
    wrong = (int(number[9]) + 1 + int(number[8]) % 8) % 10
    candidate = number[:9] + str(wrong)
    return candidate if not is_valid_nhs_number(candidate) else number[:9] + str((wrong + 1) % 10)


FEMALE_NAMES = (
    "Margaret", "Anna", "Ayesha", "Zoë", "Siân", "Chloé", "Renée", "Aoife", "Niamh", "Priya",
    "Fatima", "Susan", "Linda", "Patricia", "Emma", "Olivia", "Amelia", "Grace", "Hannah",
    "Joan", "Dorothy", "Jean", "Sarah", "Rachel", "Nicola", "Amina", "Beatriz", "Maëlle",
    "Ingrid", "Yasmin", "Ruth", "Helen", "Eileen", "Karen", "Laura", "Sophie", "Ellie",
)
MALE_NAMES = (
    "Daniel", "Tomás", "Seán", "José", "Björn", "Mohammed", "Oluwaseun", "David", "John",
    "Peter", "Michael", "Paul", "James", "Robert", "George", "Harry", "Oliver", "Jack",
    "Ahmed", "Imran", "Kwame", "Piotr", "Andrew", "Stephen", "Brian", "Kevin", "Thomas",
    "Noah", "Leo", "Arthur", "Frank", "Ernest", "Dónal", "Ciarán", "René", "François",
)
SURNAMES = (
    "Smith", "Jones", "Haworth", "Okafor", "Kowalski", "Bibi", "Hughes", "Parry", "Ó Briain",
    "O'Neill", "Müller", "Núñez", "García", "Khan", "Patel", "Ahmed", "Begum", "Hussain",
    "Taylor", "Brown", "Wilson", "Evans", "Thomas", "Roberts", "Walker", "Wright", "Robinson",
    "Thompson", "White", "Hall", "Green", "Lewis", "Clarke", "Jackson", "Wood", "Harris",
    "Martin", "Cooper", "Ward", "Mensah", "Nowak", "Singh", "Kaur", "Chowdhury", "McDonald",
    "Fitzgerald", "Brennan", "Doyle", "Lévesque", "Björk", "Ødegaard", "Dubois", "Rossi",
    "Zajac", "Lloyd", "Price", "Morgan", "Davies", "Ashworth", "Greenhalgh",
    "Kenyon", "Sutcliffe", "Ramsbottom", "Entwistle", "Pilkington", "Oldham", "Hargreaves",
)


def pick_names(rng: np.random.Generator, sexes: np.ndarray) -> tuple[list[str], list[str]]:
    """First names by sex and surnames, one pair per person."""
    female = rng.integers(0, len(FEMALE_NAMES), len(sexes))
    male = rng.integers(0, len(MALE_NAMES), len(sexes))
    either = rng.random(len(sexes)) < 0.5
    first = [
        FEMALE_NAMES[f] if s == "F" or (s not in "FM" and e) else MALE_NAMES[m]
        for s, f, m, e in zip(sexes, female, male, either)
    ]
    surnames = [SURNAMES[i] for i in rng.integers(0, len(SURNAMES), len(sexes))]
    return first, surnames
