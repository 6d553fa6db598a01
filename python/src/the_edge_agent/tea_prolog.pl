/*  tea's Prolog side: run the code of one `language: prolog` node.

    The code is read by Prolog's own reader, one clause at a time, and each clause is handled as
    the guide documents: `:- Goal` runs Goal; `Head :- Body` (and `Head --> Body`) is added as a
    rule; a compound term whose predicate is not a built-in or library predicate is added as a
    fact; anything else (a conjunction, `return(...)`, a bare atom) is a query, run once.

    Everything runs inside a temporary module that is destroyed when the node ends: the facts
    and rules the node defined, and anything its code asserted, never reach another node, and
    parallel branches each have their own module. state/2 and return/2 are static predicates
    of that module, so `state(k, V).` alone is a query, never a fact.

    The answer for tea is a dict: status ok with `returns` (Key-Value pairs, in order), or
    status error with kind (syntax, failed, timeout, error), the clause's line and a message.
*/

:- module(tea_prolog, [tea_run/4]).

:- use_module(library(modules), [in_temporary_module/3]).
:- use_module(library(time), [call_with_time_limit/2]).
:- use_module(library(apply), [maplist/3, exclude/3]).
:- use_module(library(lists), [member/2]).

:- thread_local node_state/1, returned/2.

%!  tea_run(+Code:string, +State:dict, +Timeout:number, -Answer:dict) is det.

tea_run(Code, State, Timeout, Answer) :-
    retractall(returned(_, _)),
    retractall(node_state(_)),
    to_prolog(State, PlState),
    assertz(node_state(PlState)),
    catch(call_with_time_limit(Timeout, run_in_module(Code)), Error, true),
    answer(Error, Answer),
    retractall(returned(_, _)),
    retractall(node_state(_)).

answer(Error, _{status: ok, returns: Returns}) :-
    var(Error),
    !,
    findall(Key-Value, (returned(Key, Raw), to_python(Raw, Value)), Returns).
answer(Error, _{status: error, kind: Kind, line: Line, message: Message}) :-
    failure(Error, Kind, Line, Message).

failure(tea_failure(Kind, Line, Message), Kind, Line, Message) :- !.
failure(Timeout, timeout, 0, "") :-
    timeout_error(Timeout),
    !.
failure(Error, error, 0, Message) :-
    message_text(Error, Message).

timeout_error(time_limit_exceeded).
timeout_error(time_limit_exceeded(_)).

run_in_module(Code) :-
    in_temporary_module(Module, prepare(Module), load_code(Module, Code)).

%   state/2 and return/2, static in the node's module: the only names it starts with.
prepare(Module) :-
    assertz(Module:(state(Key, Value) :- tea_prolog:node_value(Key, Value))),
    assertz(Module:(return(Key, Value) :- tea_prolog:record(Key, Value))),
    compile_predicates([Module:state/2, Module:return/2]).

node_value(Key, Value) :-
    node_state(State),
    get_dict(Key, State, Value).

%   A key returned twice keeps its last value (tea builds a dict of the pairs, in order).
record(Key, Value) :-
    must_be(atomic, Key),
    atom_string(Name, Key),
    assertz(returned(Name, Value)).

load_code(Module, Code) :-
    setup_call_cleanup(open_string(Code, Stream),
                       load_clauses(Module, Stream),
                       close(Stream)).

load_clauses(Module, Stream) :-
    read_clause(Module, Stream, Clause, Line),
    (   Clause == end_of_file
    ->  true
    ;   handle(Module, Clause, Line),
        load_clauses(Module, Stream)
    ).

read_clause(Module, Stream, Clause, Line) :-
    catch(read_term(Stream, Clause, [module(Module), term_position(Position)]), Error,
          syntax_failure(Error)),
    stream_position_data(line_count, Position, Line).

syntax_failure(error(syntax_error(What), Context)) :-
    !,
    context_line(Context, Line),
    message_text(error(syntax_error(What), _), Message),
    (   sub_string(Message, 0, _, After, "Syntax error: ")
    ->  sub_string(Message, _, After, 0, Text)
    ;   Text = Message
    ),
    throw(tea_failure(syntax, Line, Text)).
syntax_failure(Error) :-
    throw(Error).

context_line(stream(_, Line, _, _), Line) :- !.
context_line(string(_, _), 0) :- !.
context_line(_, 0).

handle(Module, Clause, Line) :-
    catch(handle_clause(Module, Clause, Line), Error, clause_error(Error, Line)).

clause_error(tea_failure(Kind, Line, Text), _) :-
    !,
    throw(tea_failure(Kind, Line, Text)).
clause_error(Error, _) :-
    timeout_error(Error),
    !,
    throw(Error).
clause_error(Error, Line) :-
    message_text(Error, Text),
    throw(tea_failure(error, Line, Text)).

handle_clause(Module, (:- Goal), Line) :-
    !,
    run_once(Module, Goal, Line, "directive").
handle_clause(Module, (Head --> Body), _) :-
    !,
    dcg_translate_rule((Head --> Body), Rule),
    assertz(Module:Rule).
handle_clause(Module, (Head :- Body), _) :-
    !,
    assertz(Module:(Head :- Body)).
handle_clause(Module, Clause, _) :-
    is_fact(Module, Clause),
    !,
    assertz(Module:Clause).
handle_clause(Module, Query, Line) :-
    run_once(Module, Query, Line, "query").

run_once(Module, Goal, Line, What) :-
    (   call(Module:Goal)
    ->  true
    ;   format(string(Text), "~w failed", [What]),
        throw(tea_failure(failed, Line, Text))
    ).

%   A fact: a compound whose predicate is not callable yet, or one the code itself defined (its
%   clauses are dynamic). Control constructs, built-ins, library predicates (loaded or autoloadable)
%   and state/2, return/2 are visible and static: a clause of theirs is a query.
is_fact(Module, Clause) :-
    compound(Clause),
    (   \+ predicate_property(Module:Clause, visible)
    ->  true
    ;   predicate_property(Module:Clause, dynamic)
    ).

%   The first line of Prolog's own message (later lines are context: stack sizes, frames).
message_text(Error, Text) :-
    message_to_codes(Error, Codes),
    string_codes(Message, Codes),
    split_string(Message, "\n", " \t", Lines),
    exclude(==(""), Lines, [Text|_]),
    !.
message_text(Error, Text) :-
    term_string(Error, Text).

message_to_codes(Error, Codes) :-
    '$messages':translate_message(Error, Lines, []),
    !,
    with_output_to(codes(Codes), print_message_lines(current_output, '', Lines)).
message_to_codes(Error, Codes) :-
    format(codes(Codes), "~q", [Error]).

%   Values from tea's state, as upstream tea gives them to Prolog: janus already makes text atoms;
%   None (@none) becomes null, and the booleans (@true, @false) the atoms true and false.
to_prolog(Value, Value) :- var(Value), !.
to_prolog(@(none), null) :- !.
to_prolog(@(true), true) :- !.
to_prolog(@(false), false) :- !.
to_prolog(Value, List) :- is_list(Value), !, maplist(to_prolog, Value, List).
to_prolog(Value, Dict) :- is_dict(Value), !, map_dict(to_prolog, Value, Dict).
to_prolog(Value, Value).

%   Values for tea's state, in janus' terms: null and unbound as @none, true/false as booleans,
%   lists and dicts converted inside, any other compound as its text.
to_python(Value, @(none)) :- var(Value), !.
to_python(null, @(none)) :- !.
to_python(true, @(true)) :- !.
to_python(false, @(false)) :- !.
to_python(Value, Value) :- atom(Value), !.
to_python(Value, Value) :- string(Value), !.
to_python(Value, Value) :- integer(Value), !.
to_python(Value, Value) :- float(Value), !.
to_python(Value, Float) :- rational(Value), !, Float is float(Value).
to_python(Value, List) :- is_list(Value), !, maplist(to_python, Value, List).
to_python(Value, Dict) :- is_dict(Value), !, map_dict(to_python, Value, Dict).
to_python(Value, Text) :- term_string(Value, Text).

map_dict(Convert, Dict, Converted) :-
    dict_pairs(Dict, _, Pairs),
    findall(Key-Value, (member(Key-Raw, Pairs), call(Convert, Raw, Value)), NewPairs),
    dict_pairs(Converted, _, NewPairs).
