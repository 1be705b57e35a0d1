"""Social prescribing SNOMED CT concepts (NHS England) shared by the EMIS and SystmOne feeds."""

SOCIAL_PRESCRIBING_REFERRAL = "871731000000106"  # Referral to social prescribing service
SOCIAL_PRESCRIBING_DECLINED = "871711000000103"  # Social prescribing declined
SOCIAL_PRESCRIBING_CODES = (SOCIAL_PRESCRIBING_REFERRAL, SOCIAL_PRESCRIBING_DECLINED)
