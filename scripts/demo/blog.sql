-- Demo data: a small blog, some posts published and some still drafts.
CREATE TABLE blog
( id             int GENERATED ALWAYS AS IDENTITY PRIMARY KEY
, title          text NOT NULL
, author         text NOT NULL
, category       text NOT NULL
, contents       text NOT NULL
, published_time timestamptz  -- NULL while a draft
);

INSERT INTO blog (title, author, category, contents, published_time) VALUES
('Sourdough for impatient people', 'Maya Lindqvist', 'food',
 'A starter needs a week of feeding before it can raise a loaf, but the bread itself takes one evening of work. Mix flour, water and a spoon of active starter, fold the dough four times an hour apart, then let the fridge do the slow part overnight. Bake in a preheated cast-iron pot with the lid on for twenty minutes and off for twenty more.', '2024-03-02 08:10+00'),
('Why your tomatoes split after rain', 'Maya Lindqvist', 'garden',
 'Fruit that has been thirsty swells faster than its skin can stretch when a heavy rain finally arrives. Deep, regular watering and a layer of straw mulch keep the soil moisture even, and picking fruit at the first blush of colour lets it finish ripening indoors where the weather cannot reach it.', '2024-06-18 17:45+00'),
('Indexing a billion rows without downtime', 'Tomás Ferreira', 'databases',
 'Building an index on a busy table blocks writes unless it is built concurrently. A concurrent build scans the table twice and waits for old transactions, so it is slower, but inserts and updates keep flowing. Watch pg_stat_progress_create_index, and drop and retry an index left invalid by a failed build.', '2024-02-11 12:00+00'),
('Vacuum is not optional', 'Tomás Ferreira', 'databases',
 'Every update in Postgres writes a new row version and leaves the old one behind. Autovacuum reclaims that space and freezes old transaction ids; when it falls behind, tables bloat and, in the worst case, the database stops accepting writes to protect itself from wraparound. Tune the thresholds for tables that churn.', '2024-04-23 09:30+00'),
('A week on the West Highland Way', 'Isla McKenzie', 'travel',
 'The trail runs ninety-six miles from the edge of Glasgow to Fort William, past Loch Lomond and across Rannoch Moor. Midges are the real test of character in July. Book the bunkhouses early, carry a spare pair of dry socks for every day, and do not skip the climb up the Devil''s Staircase.', '2024-07-30 19:20+00'),
('Night trains are back', 'Isla McKenzie', 'travel',
 'Sleeper services now link Vienna, Berlin, Brussels and Zurich again. A couchette costs less than a hotel room and a flight combined, and you wake up in the city centre instead of an airport an hour away. Bring earplugs, a water bottle and something warm for the border stops at three in the morning.', '2024-09-05 06:00+00'),
('Teaching kids to debug', 'Priya Raman', 'education',
 'Children give up on a broken program when they believe the computer is being mysterious. Teach them to read the error message aloud, change one thing at a time, and predict what the program will do before running it. A rubber duck on the desk works as well for ten-year-olds as it does for senior engineers.', '2024-01-15 15:00+00'),
('The quiet power of spaced repetition', 'Priya Raman', 'education',
 'Reviewing a fact just before you would forget it strengthens memory far more than rereading it the same day. Flashcard programs schedule those reviews automatically. Ten minutes a day for a year beats a weekend of cramming, whether the subject is vocabulary, anatomy or the keyboard shortcuts of your editor.', '2024-05-09 07:40+00'),
('Choosing a first telescope', 'Jonas Weber', 'science',
 'Aperture matters more than magnification: a six-inch reflector on a simple Dobsonian mount shows the rings of Saturn, the cloud belts of Jupiter and hundreds of star clusters. Avoid department-store refractors that promise five hundred times zoom. Dark skies an hour from the city will improve the view more than any eyepiece.', '2024-08-12 21:00+00'),
('What the James Webb telescope sees', 'Jonas Weber', 'science',
 'Infrared light passes through the dust that hides newborn stars from visible-light telescopes. Webb''s mirror, folded for launch and unfolded a million miles from Earth, collects that faint warmth from galaxies whose light left them more than thirteen billion years ago, when the universe was a few hundred million years old.', '2024-10-01 10:15+00'),
('Electric cars in a cold winter', 'Sofia Marino', 'energy',
 'Batteries deliver less energy when they are cold, and heating the cabin takes its share too, so range can drop by a third in a northern winter. Preheating the car while it is still plugged in, using seat heaters instead of hot air, and a heat pump all claw back much of the loss.', '2024-01-28 08:00+00'),
('Home batteries and time-of-use tariffs', 'Sofia Marino', 'energy',
 'With electricity prices that change by the hour, a home battery can charge overnight when power is cheap and run the house through the evening peak. The savings depend on the spread between peak and off-peak prices, so run the numbers with your own tariff before buying.', '2024-11-04 13:30+00'),
('Fermenting hot sauce at home', 'Maya Lindqvist', 'food',
 'Chillies, garlic and a two percent salt brine are all it takes. Keep the vegetables under the brine with a weight, leave the jar at room temperature for two weeks, then blend with a splash of vinegar. The lactic bacteria add a tang and depth that fresh sauces never reach.', '2024-09-22 18:00+00'),
('Reading query plans without fear', 'Tomás Ferreira', 'databases',
 'EXPLAIN ANALYZE shows what the planner chose and what actually happened. Compare estimated and actual row counts first: a large gap usually means stale statistics or correlated columns, and it explains most bad joins. Then look for sequential scans over large tables that a selective filter should have avoided.', NULL),
('Packing light for a month', 'Isla McKenzie', 'travel',
 'Everything fits in a twenty-eight litre backpack if every item earns its place: three shirts, two pairs of trousers, merino socks that survive a week, a thin down jacket and a laundry bag. Wash clothes in the sink every few days and buy what you forgot on the way.', NULL),
('Photosynthesis in one page', 'Jonas Weber', 'science',
 'Plants capture light with chlorophyll and use its energy to split water, releasing oxygen. The electrons and protons freed in that step power the Calvin cycle, which fixes carbon dioxide from the air into sugars. Nearly all the food and fossil fuel on Earth began as this reaction.', '2024-03-19 11:00+00'),
('Growing basil on a windowsill', 'Maya Lindqvist', 'garden',
 'Basil wants six hours of sun, warm feet and soil that dries between waterings. Pinch off the flower buds as soon as they appear and harvest from the top, just above a pair of leaves, so the plant branches into a bush instead of growing one tall stem.', '2024-05-27 09:00+00'),
('Open source maintainers need weekends too', 'Priya Raman', 'software',
 'A popular library can generate more issues in a week than a volunteer can answer in a month. Clear contribution guidelines, issue templates, and saying no to features that do not fit the project protect the people who keep it alive. Funding helps, but boundaries help first.', '2024-06-03 16:00+00'),
('Why we moved our queue into Postgres', 'Tomás Ferreira', 'software',
 'Running a separate message broker meant another system to monitor, back up and upgrade. A table with SELECT ... FOR UPDATE SKIP LOCKED gave us at-least-once delivery, transactional enqueueing with the data that caused the job, and one fewer thing to page us at night.', '2024-08-28 14:20+00'),
('Solar panels on a north-facing roof', 'Sofia Marino', 'energy',
 'In the northern hemisphere a north-facing roof collects noticeably less sunlight than one facing south, but modern panels are cheap enough that the numbers can still work, especially on shallow pitches. East-west arrays spread production across the day and match household demand better than a single south face.', NULL);
