-- Invariant: a person's referral episodes open at least episode_window_days apart (a code inside
-- an episode's window never opens another). Returns the pairs of episodes that are closer.

with

referral_episodes as (

    select * from {{ ref('int_referral_episodes_opened') }}

),

episodes_with_previous as (

    select
        episode_key,
        person_key,
        referral_date,
        lag(referral_date) over (partition by person_key order by referral_date) as previous_referral_date
    from referral_episodes

)

select *
from episodes_with_previous
where
    previous_referral_date is not null
    and (
        {{ dbt.datediff('previous_referral_date', 'referral_date', 'day') }}
        < {{ var('episode_window_days') }}
    )
