-- Once added a day lexeme to `doc` for candidate tiers by day; 032 took it out again (the RUM index of 030
-- orders matches by time itself). Kept, empty, so databases that applied it keep a consistent history.
SELECT 1;
